import { Badge, Button, Card, Code, Heading, HStack, Stack, Text, Wrap } from "@chakra-ui/react";

import type { Job, Site } from "../api";
import { taskInstancePath } from "../airflow";
import { AirflowLink } from "../components/AirflowLink";
import { Muted } from "../components/Notes";
import { OrderCounts } from "../components/OrderCounts";
import { RunStateBadge } from "../components/StateBadge";
import { useLocale } from "../locale";

const JOBS: readonly Job[] = ["payment_methods", "cancel", "refund"];

/** The site's name (or its id when it has none), its id, and whether it is active (when known). */
export const SiteTitle = ({
  site,
  as = "h2",
}: {
  readonly site: Pick<Site, "site_id" | "name"> & { readonly active?: boolean };
  readonly as?: "h2" | "h3";
}) => {
  const { text } = useLocale();

  return (
    <HStack flexWrap="wrap" gap={3}>
      <Heading as={as} size={as === "h2" ? "lg" : "md"}>
        {site.name ?? site.site_id}
      </Heading>
      <Text color="fg.muted" fontSize="sm">
        {text.siteId} <Code>{site.site_id}</Code>
      </Text>
      {site.active === undefined ? null : (
        <Badge
          colorPalette={site.active ? "green" : "gray"}
          data-testid="komoju-site-active"
          variant={site.active ? "subtle" : "outline"}
        >
          {site.active ? text.active : text.inactive}
        </Badge>
      )}
    </HStack>
  );
};

const LatestRuns = ({ site }: { readonly site: Site }) => {
  const { dateTime, text } = useLocale();
  const jobs = JOBS.filter((job) => job in site.latest_runs);

  if (jobs.length === 0) {
    return <Muted>{text.noReadableJobs}</Muted>;
  }

  return (
    <Stack as="dl" gap={1}>
      {jobs.map((job) => {
        const run = site.latest_runs[job];
        const check = job === "payment_methods" ? undefined : site.last_checked?.[job];
        // A site with nothing to do gets no task: say when a run last looked, if that is newer than its task.
        const idleCheck =
          check && !check.had_work && check.checked_at && (!run?.run_after || Date.parse(check.checked_at) > Date.parse(run.run_after))
            ? check.checked_at
            : null;

        return (
          <HStack data-job={job} flexWrap="wrap" gap={3} key={job}>
            <Text as="dt" color="fg.muted" fontSize="sm" minW="12rem">
              {text.jobs[job]}
            </Text>
            <Text as="dd" fontSize="sm">
              {run ? (
                <AirflowLink to={taskInstancePath(run)}>
                  <RunStateBadge state={run.state} /> {dateTime(run.run_after)}
                </AirflowLink>
              ) : (
                <Text as="span" color="fg.muted">
                  {text.neverRan}
                </Text>
              )}
              {idleCheck ? (
                <Text as="span" color="fg.muted" data-testid="komoju-idle-check" ms={2}>
                  {text.checkedNothingToDo(dateTime(idleCheck))}
                </Text>
              ) : null}
            </Text>
          </HStack>
        );
      })}
    </Stack>
  );
};

/** One site on the overview: latest runs, order outcomes, and what needs a person. */
export const SiteCard = ({
  site,
  runsUnknown,
  selected,
  onSelect,
}: {
  readonly site: Site;
  readonly runsUnknown: boolean;
  readonly selected: boolean;
  readonly onSelect: () => void;
}) => {
  const { text } = useLocale();

  return (
    <Card.Root
      bg={site.active ? undefined : "bg.muted"}
      height="full"
      borderColor={selected ? "border.info" : "border"}
      borderStyle={site.active ? "solid" : "dashed"}
      data-active={site.active}
      data-site-id={site.site_id}
      data-testid="komoju-site"
      size="sm"
      variant="outline"
    >
      <Card.Header>
        <SiteTitle site={site} />
      </Card.Header>
      <Card.Body>
        <Stack gap={4}>
          <Wrap gap={2}>
            <Badge colorPalette={site.to_settle ? "red" : "gray"} data-testid="komoju-to-settle" variant="subtle">
              {text.toSettleCount(site.to_settle)}
            </Badge>
            <Badge colorPalette={site.pending ? "blue" : "gray"} data-testid="komoju-pending" variant="subtle">
              {text.pendingCount(site.pending)}
            </Badge>
          </Wrap>
          {runsUnknown ? null : (
            <Stack gap={1}>
              <Heading as="h3" size="sm">
                {text.latestRuns}
              </Heading>
              <LatestRuns site={site} />
            </Stack>
          )}
          {Object.keys(site.counts).length > 0 ? (
            <Stack gap={1}>
              <Heading as="h3" size="sm">
                {text.orders}
              </Heading>
              <OrderCounts counts={site.counts} />
            </Stack>
          ) : null}
        </Stack>
      </Card.Body>
      <Card.Footer>
        <Button aria-pressed={selected} disabled={selected} onClick={onSelect} size="sm" variant="outline">
          {selected ? text.detailsShown : text.showDetails}
        </Button>
      </Card.Footer>
    </Card.Root>
  );
};
