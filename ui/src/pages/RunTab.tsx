import { Badge, Box, Card, Heading, HStack, Stack, Table, Text } from "@chakra-ui/react";

import { paths, type RunReport, type RunSite } from "../api";
import { taskInstancePath } from "../airflow";
import type { PluginProps } from "../apps";
import { AirflowLink } from "../components/AirflowLink";
import { DataTable } from "../components/DataTable";
import { ErrorNote, Loading, Muted } from "../components/Notes";
import { OrderStatusBadge, RunStateBadge } from "../components/StateBadge";
import { useLocale } from "../locale";
import { useApi } from "../useApi";
import { SiteTitle } from "./SiteCard";

const EMAIL_PALETTES: Record<string, string> = { none: "gray", not_sent: "red", off: "gray", sent: "green" };

const SiteResult = ({ report, site }: { readonly report: RunReport; readonly site: RunSite }) => {
  const { count, text } = useLocale();
  const counts = site.counts;
  const state = <RunStateBadge state={site.state} />;
  const emailText = text.emailStates[site.email.state]?.(site.email.recipients) ?? site.email.state;

  return (
    <Card.Root data-site-id={site.site_id} data-testid="komoju-run-site" size="sm" variant="outline">
      <Card.Header>
        <HStack flexWrap="wrap" gap={3} justifyContent="space-between">
          <SiteTitle as="h3" site={site} />
          <HStack gap={2}>
            <Text color="fg.muted" fontSize="sm">
              {text.state}
            </Text>
            {site.task_id ? (
              <AirflowLink to={taskInstancePath({ ...report, map_index: site.map_index, task_id: site.task_id })}>
                {state}
              </AirflowLink>
            ) : (
              state
            )}
          </HStack>
        </HStack>
      </Card.Header>
      <Card.Body>
        <Stack gap={3}>
          {counts === null ? (
            <Muted>{text.noSummary}</Muted>
          ) : (
            <>
              {counts.dry_run ? (
                <Badge alignSelf="flex-start" colorPalette="purple" variant="outline">
                  {text.dryRun}
                </Badge>
              ) : null}
              <DataTable
                header={
                  <>
                    <Table.ColumnHeader textAlign="end">{text.succeeded}</Table.ColumnHeader>
                    <Table.ColumnHeader textAlign="end">{text.pendingHeader}</Table.ColumnHeader>
                    <Table.ColumnHeader textAlign="end">{text.rejected}</Table.ColumnHeader>
                    <Table.ColumnHeader textAlign="end">{text.failed}</Table.ColumnHeader>
                    <Table.ColumnHeader textAlign="end">{text.finalFailures}</Table.ColumnHeader>
                    <Table.ColumnHeader textAlign="end">{text.notSent}</Table.ColumnHeader>
                  </>
                }
                testId="komoju-run-counts"
              >
                <Table.Row>
                  {(["succeeded", "pending", "rejected", "failed", "final_failures", "not_sent"] as const).map(
                    (key) => (
                      <Table.Cell data-count={key} key={key} textAlign="end">
                        {count(counts[key])}
                      </Table.Cell>
                    ),
                  )}
                </Table.Row>
              </DataTable>
            </>
          )}
          <HStack gap={2}>
            <Text color="fg.muted" fontSize="sm">
              {text.email}
            </Text>
            <Badge
              colorPalette={EMAIL_PALETTES[site.email.state] ?? "gray"}
              data-testid="komoju-run-email"
              variant="subtle"
            >
              {emailText}
            </Badge>
          </HStack>
          {site.failures.length > 0 ? (
            <Stack gap={1}>
              <Heading as="h4" size="xs">
                {text.failuresInRun}
              </Heading>
              <DataTable
                header={
                  <>
                    <Table.ColumnHeader>{text.orderNo}</Table.ColumnHeader>
                    <Table.ColumnHeader>{text.status}</Table.ColumnHeader>
                    <Table.ColumnHeader textAlign="end">{text.amount}</Table.ColumnHeader>
                    <Table.ColumnHeader>{text.komojuReason}</Table.ColumnHeader>
                  </>
                }
                testId="komoju-run-failures"
              >
                {site.failures.map((failure) => (
                  <Table.Row data-order-no={failure.order_no} key={failure.order_no}>
                    <Table.Cell fontFamily="mono">{failure.order_no}</Table.Cell>
                    <Table.Cell>
                      <OrderStatusBadge status={failure.status} />
                    </Table.Cell>
                    <Table.Cell textAlign="end" whiteSpace="nowrap">
                      {failure.amount_text}
                    </Table.Cell>
                    <Table.Cell minW="16rem">{failure.reason}</Table.Cell>
                  </Table.Row>
                ))}
              </DataTable>
            </Stack>
          ) : null}
        </Stack>
      </Card.Body>
    </Card.Root>
  );
};

/**
 * The DAG-run tab (destination "dag_run"): what a cancel or refund run did, per site. Airflow 3.3 shows the tab
 * on every DAG's runs; the API says whether this run is a KOMOJU cancel/refund run (`job` null when not).
 */
export const RunTab = ({ dagId, runId }: PluginProps) => {
  const { text } = useLocale();
  const path = dagId && runId ? paths.run(dagId, runId) : null;
  const report = useApi<RunReport>(path);
  const data = report.data;

  return (
    <Box data-testid="komoju-run-tab" p={4}>
      <Stack gap={4}>
        <Heading as="h2" size="lg">
          {text.runTitle}
        </Heading>
        {report.error ? <ErrorNote error={report.error} /> : null}
        {path === null || data?.job === null ? (
          <Text color="fg.warning" data-testid="komoju-not-a-komoju-run">
            {text.notKomojuDag}
          </Text>
        ) : data === undefined ? (
          report.loading ? (
            <Loading />
          ) : null
        ) : (
          <>
            <Text color="fg.muted" fontSize="sm">
              {text.jobs[data.job]}
            </Text>
            {data.sites.length === 0 ? <Muted>{text.noSitesInRun}</Muted> : null}
            {data.sites.map((site) => (
              <SiteResult key={site.site_id} report={data} site={site} />
            ))}
          </>
        )}
      </Stack>
    </Box>
  );
};
