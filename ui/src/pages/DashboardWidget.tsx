import { Box, Card, Code, HStack, Stack, Text } from "@chakra-ui/react";

import { komojuPagePath } from "../airflow";
import { ApiError, paths, type Dashboard } from "../api";
import { AirflowLink } from "../components/AirflowLink";
import { ErrorNote } from "../components/Notes";
import { useLocale } from "../locale";
import { useApi } from "../useApi";

/**
 * The home-page card (destination "dashboard"): how many orders need a person, per site, linked to the KOMOJU
 * page. Renders nothing until the answer arrives, so the dashboard does not jump twice, and nothing for a user
 * the API refuses (401/403): every user sees the dashboard, not every user may see KOMOJU.
 */
export const DashboardWidget = () => {
  const { text } = useLocale();
  const dashboard = useApi<Dashboard>(paths.dashboard());
  const data = dashboard.data;

  if (dashboard.error instanceof ApiError && [401, 403].includes(dashboard.error.status)) {
    return null;
  }
  if (dashboard.error) {
    return (
      <Box data-testid="komoju-dashboard">
        <ErrorNote error={dashboard.error} />
      </Box>
    );
  }
  if (data === undefined) {
    return null;
  }
  const attention = data.to_settle > 0 || data.pending > 0;

  return (
    <Card.Root
      borderColor={data.to_settle > 0 ? "border.error" : "border"}
      data-testid="komoju-dashboard"
      size="sm"
      variant="outline"
    >
      <Card.Body>
        <Stack gap={2}>
          <AirflowLink to={komojuPagePath()}>
            <Text as="span" fontWeight="semibold">
              {attention ? text.dashboardSummary(data.to_settle, data.pending) : text.dashboardAllClear}
            </Text>
          </AirflowLink>
          {data.sites.length > 0 ? (
            <Stack as="ul" gap={1} listStyleType="none">
              {data.sites.map((site) => (
                <HStack as="li" data-site-id={site.site_id} flexWrap="wrap" gap={2} key={site.site_id}>
                  <AirflowLink to={komojuPagePath(site.site_id)}>{site.name ?? site.site_id}</AirflowLink>
                  {site.name ? <Code size="sm">{site.site_id}</Code> : null}
                  <Text color="fg.muted" fontSize="sm">
                    {text.dashboardSite(site.to_settle, site.pending)}
                  </Text>
                </HStack>
              ))}
            </Stack>
          ) : null}
        </Stack>
      </Card.Body>
    </Card.Root>
  );
};
