/**
 * The plugin's React apps, by the `name` each has in plugins/komoju_react.py's `react_apps`. The host looks a
 * loaded component up as `globalThis[name]`; main.tsx registers each component under its name, because the
 * two apps share this one bundle and a module is evaluated only once (the host's fallback,
 * `globalThis.AirflowPlugin`, would serve only the first app loaded). tests/komoju/test_react_ui.py checks that
 * the Python registration and the built bundle agree on these names.
 */
export const APP_NAMES = {
  nav: "KOMOJU (React)",
  dagRun: "KOMOJU run (React)",
} as const;

/** The DAGs whose runs the dag_run tab is for. Airflow 3.3 shows a dag_run tab on every DAG's runs. */
export const KOMOJU_RUN_DAG_IDS: readonly string[] = ["komoju_cancel_process", "komoju_refund_process"];

/** The props Airflow 3.3 passes to every plugin component: the route's parameters, where the route has them. */
export type PluginProps = {
  readonly dagId?: string;
  readonly mapIndex?: string;
  readonly runId?: string;
  readonly taskId?: string;
};
