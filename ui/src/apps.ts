/**
 * The plugin's React apps, by the `name` each has in the Python plugin's `react_apps`. The host looks a loaded
 * component up as `globalThis[name]`; main.tsx registers each component under its name, because the three apps
 * share this one bundle and a module is evaluated only once (the host's fallback, `globalThis.AirflowPlugin`,
 * would serve only the first app loaded). The names must therefore be distinct.
 *
 * Airflow 3.3.2 shows the name itself, untranslated: the nav entry's title and the dag_run tab's label. The
 * dashboard app's name is never shown.
 */
export const APP_NAMES = {
  nav: "KOMOJU",
  dagRun: "KOMOJU results",
  dashboard: "KOMOJU dashboard",
} as const;

/** `url_route` of the nav page and the dag_run tab; the host serves them at `/plugin/<url_route>`. */
export const URL_ROUTES = {
  nav: "komoju",
  dagRun: "komoju-run",
} as const;

/** The props Airflow 3.3 passes to every plugin component: the route's parameters, where the route has them. */
export type PluginProps = {
  readonly dagId?: string;
  readonly mapIndex?: string;
  readonly runId?: string;
  readonly taskId?: string;
};
