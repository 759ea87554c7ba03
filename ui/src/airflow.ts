/**
 * Paths into the Airflow UI, for the host's router (`Link` from react-router-dom, the host's own instance):
 * a path starting with "/" is resolved against the host's basename, so it works under a sub-path too.
 */
import { URL_ROUTES } from "./apps";

const segment = encodeURIComponent;

/** Airflow's page of one task instance; a mapped one (map_index >= 0) has its own page. */
export const taskInstancePath = (run: {
  readonly dag_id: string;
  readonly run_id: string;
  readonly task_id: string;
  readonly map_index: number | null;
}): string => {
  const base = `/dags/${segment(run.dag_id)}/runs/${segment(run.run_id)}/tasks/${segment(run.task_id)}`;

  return run.map_index === null || run.map_index < 0 ? base : `${base}/mapped/${run.map_index}`;
};

/** The KOMOJU nav page, optionally with one site's details open. */
export const komojuPagePath = (siteId?: string): string =>
  siteId === undefined ? `/plugin/${URL_ROUTES.nav}` : `/plugin/${URL_ROUTES.nav}?site=${segment(siteId)}`;
