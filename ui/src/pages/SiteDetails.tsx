import { Badge, Box, Heading, Stack, Tabs } from "@chakra-ui/react";
import { useEffect, useRef } from "react";

import { paths, type SiteDetails } from "../api";
import { ErrorNote, Loading } from "../components/Notes";
import { useLocale } from "../locale";
import { useApi } from "../useApi";
import { PendingOrders, OrdersToSettle } from "./OrderTables";
import { PaymentMethods } from "./PaymentMethods";
import { RecentChanges } from "./RecentChanges";
import { SettingsForm } from "./SettingsForm";
import { SiteTitle } from "./SiteCard";

const CountBadge = ({ value, palette }: { readonly value: number; readonly palette: string }) =>
  value > 0 ? (
    <Badge colorPalette={palette} size="sm" variant="solid">
      {value}
    </Badge>
  ) : null;

/** One site's details: settings, payment methods, orders that need a person, and its recent changes. */
export const SiteDetailsPanel = ({
  siteId,
  reloadKey,
  onChanged,
  scrollIntoView = false,
}: {
  readonly siteId: string;
  readonly reloadKey: number;
  /** Called after every change the server accepted: the page reloads what it shows. */
  readonly onChanged: () => void;
  readonly scrollIntoView?: boolean;
}) => {
  const { text } = useLocale();
  const details = useApi<SiteDetails>(paths.site(siteId), reloadKey);
  const ref = useRef<HTMLElement>(null);
  const site = details.data;

  useEffect(() => {
    if (scrollIntoView) {
      ref.current?.scrollIntoView?.({ block: "start" });
    }
  }, [scrollIntoView]);

  return (
    <Box
      as="section"
      borderColor="border"
      borderRadius="md"
      borderWidth="1px"
      data-testid="komoju-details"
      p={4}
      ref={ref}
    >
      <Stack gap={4}>
        <Heading as="h2" color="fg.muted" size="sm">
          {text.detailsOf}
        </Heading>
        {details.error ? <ErrorNote error={details.error} /> : null}
        {site === undefined ? (
          details.loading ? (
            <Loading />
          ) : null
        ) : (
          <>
            <SiteTitle site={site} />
            <Tabs.Root defaultValue="settings" size="sm" variant="line">
              <Tabs.List flexWrap="wrap">
                <Tabs.Trigger value="settings">{text.tabs.settings}</Tabs.Trigger>
                <Tabs.Trigger value="payment-methods">{text.tabs.paymentMethods}</Tabs.Trigger>
                <Tabs.Trigger value="to-settle">
                  {text.tabs.toSettle} <CountBadge palette="red" value={site.orders.to_settle.length} />
                </Tabs.Trigger>
                <Tabs.Trigger value="pending">
                  {text.tabs.pending} <CountBadge palette="blue" value={site.orders.pending.length} />
                </Tabs.Trigger>
                <Tabs.Trigger value="changes">{text.tabs.recentChanges}</Tabs.Trigger>
              </Tabs.List>
              <Tabs.Content value="settings">
                <SettingsForm onChanged={onChanged} site={site} />
              </Tabs.Content>
              <Tabs.Content value="payment-methods">
                <PaymentMethods onChanged={onChanged} paymentMethods={site.payment_methods} siteId={site.site_id} />
              </Tabs.Content>
              <Tabs.Content value="to-settle">
                <OrdersToSettle orders={site.orders.to_settle} />
              </Tabs.Content>
              <Tabs.Content value="pending">
                <PendingOrders orders={site.orders.pending} />
              </Tabs.Content>
              <Tabs.Content value="changes">
                <RecentChanges changes={site.recent_changes} />
              </Tabs.Content>
            </Tabs.Root>
          </>
        )}
      </Stack>
    </Box>
  );
};
