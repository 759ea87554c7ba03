import { Alert, Box, Heading, HStack, SimpleGrid, Stack, Text } from "@chakra-ui/react";
import { useState } from "react";
import { useSearchParams } from "react-router-dom";

import { paths, type Overview } from "../api";
import { ErrorNote, Loading, Muted } from "../components/Notes";
import { useLocale } from "../locale";
import { useApi } from "../useApi";
import { SiteCard } from "./SiteCard";
import { SiteDetailsPanel } from "./SiteDetails";

/**
 * The nav page (destination "nav"): every site as a card (the API sorts them, active first), and the details of
 * one site below; which one is in the URL (`?site=<id>`, the host's router), so it survives a reload and a link
 * can point at it. Without one, the first site's details are shown.
 */
export const KomojuPage = () => {
  const { text } = useLocale();
  const [reloadKey, setReloadKey] = useState(0);
  const overview = useApi<Overview>(paths.overview(), reloadKey);
  const [searchParams, setSearchParams] = useSearchParams();
  const sites = overview.data?.sites ?? [];
  const requested = searchParams.get("site");
  const selected = sites.find((site) => site.site_id === requested) ?? sites[0];
  const reload = () => setReloadKey((key) => key + 1);

  return (
    <Box data-testid="komoju-page" p={{ base: 3, md: 6 }}>
      <Stack gap={5}>
        <HStack alignItems="baseline" flexWrap="wrap" gap={4} justifyContent="space-between">
          <Heading as="h1" size="2xl">
            {text.title}
          </Heading>
          {overview.data ? (
            <Text color="fg.muted" fontSize="sm">
              {text.signedInAs}: {overview.data.user}
            </Text>
          ) : null}
        </HStack>
        {overview.error ? <ErrorNote error={overview.error} /> : null}
        {overview.data === undefined ? (
          overview.loading ? (
            <Loading />
          ) : null
        ) : (
          <>
            {overview.data.runs_unknown ? (
              <Alert.Root data-testid="komoju-runs-unknown" size="sm" status="warning" variant="subtle">
                <Alert.Indicator />
                <Alert.Description>{text.runsUnknown}</Alert.Description>
              </Alert.Root>
            ) : null}
            {sites.length === 0 ? <Muted>{text.noSites}</Muted> : null}
            <SimpleGrid as="ul" columns={{ base: 1, lg: 2 }} gap={4} listStyleType="none">
              {sites.map((site) => (
                <Box as="li" key={site.site_id}>
                  <SiteCard
                    onSelect={() => setSearchParams({ site: site.site_id })}
                    runsUnknown={overview.data?.runs_unknown ?? false}
                    selected={site.site_id === selected?.site_id}
                    site={site}
                  />
                </Box>
              ))}
            </SimpleGrid>
            {selected ? (
              <SiteDetailsPanel
                key={selected.site_id}
                onChanged={reload}
                reloadKey={reloadKey}
                scrollIntoView={requested === selected.site_id}
                siteId={selected.site_id}
              />
            ) : null}
          </>
        )}
      </Stack>
    </Box>
  );
};
