import { Badge } from "@chakra-ui/react";

import { useLocale } from "../locale";

// Close to the colors Airflow gives its states, in Chakra palettes that the host theme has in light and dark.
const STATE_PALETTES: Record<string, string> = {
  deferred: "purple",
  failed: "red",
  queued: "gray",
  removed: "gray",
  restarting: "purple",
  running: "blue",
  scheduled: "gray",
  skipped: "pink",
  success: "green",
  up_for_reschedule: "cyan",
  up_for_retry: "yellow",
  upstream_failed: "orange",
};

/** An Airflow task state, in the user's language. */
export const RunStateBadge = ({ state }: { readonly state: string | null }) => {
  const { text } = useLocale();
  const key = state ?? "none";

  return (
    <Badge colorPalette={STATE_PALETTES[key] ?? "gray"} data-state={key} variant="subtle">
      {text.states[key] ?? key}
    </Badge>
  );
};

const STATUS_PALETTES: Record<string, string> = {
  Cancelled: "green",
  Failed: "red",
  Pending: "blue",
  Refunded: "green",
  Rejected: "orange",
  to_do: "gray",
};

/** An order's status in the KOMOJU jobs ("to_do", "Cancelled", ...), in the user's language. */
export const OrderStatusBadge = ({ status }: { readonly status: string }) => {
  const { text } = useLocale();

  return (
    <Badge colorPalette={STATUS_PALETTES[status] ?? "gray"} data-status={status} variant="subtle">
      {text.statuses[status] ?? status}
    </Badge>
  );
};
