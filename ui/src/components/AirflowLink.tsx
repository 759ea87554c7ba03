import { Link } from "@chakra-ui/react";
import type { ReactNode } from "react";
import { Link as RouterLink } from "react-router-dom";

/**
 * A link into the Airflow UI through the host's router (react-router-dom is the host's own instance): no page
 * reload, and the host's basename is applied, so it works when Airflow is served under a sub-path.
 */
export const AirflowLink = ({ to, children }: { readonly to: string; readonly children: ReactNode }) => (
  <Link asChild color="fg.info">
    <RouterLink to={to}>{children}</RouterLink>
  </Link>
);
