/**
 * The plugin's JSON API (its FastAPI app, mounted at `/komoju`), authenticated by the UI's `_token` cookie.
 * Paths are relative to the host's `<base href>` (see pluginUrl). Errors arrive as HTTP 4xx/5xx with
 * `{"detail": "<a sentence>", "field": "<form field>" | null}`: the sentence is shown to the user as it is.
 */
import { pluginUrl } from "./host";

export const API_PREFIX = "komoju/api";

export class ApiError extends Error {
  readonly status: number;
  /** The server's own sentence, or null when the answer carried none (a proxy's error page, a crash). */
  readonly detail: string | null;
  /** The form field the error is about, when the server names one (HTTP 422). */
  readonly field: string | null;

  constructor(status: number, detail: string | null, field: string | null = null) {
    super(detail ?? `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.detail = detail;
    this.field = field;
  }
}

const errorFrom = async (response: Response): Promise<ApiError> => {
  try {
    const body = (await response.json()) as { detail?: unknown; field?: unknown };

    return new ApiError(
      response.status,
      typeof body.detail === "string" ? body.detail : null,
      typeof body.field === "string" ? body.field : null,
    );
  } catch {
    return new ApiError(response.status, null);
  }
};

const call = async <T>(path: string, init: RequestInit): Promise<T> => {
  const response = await fetch(pluginUrl(`${API_PREFIX}/${path}`), {
    ...init,
    credentials: "same-origin",
    headers: { Accept: "application/json", ...init.headers },
  });

  if (!response.ok) {
    throw await errorFrom(response);
  }

  return (await response.json()) as T;
};

export const getJson = <T>(path: string, signal?: AbortSignal): Promise<T> => call<T>(path, { signal });

export const postJson = <T>(path: string, body: unknown): Promise<T> =>
  call<T>(path, {
    body: JSON.stringify(body),
    headers: { "Content-Type": "application/json" },
    method: "POST",
  });

const segment = encodeURIComponent;

// ---- the answers -------------------------------------------------------------------------------------------

export type Job = "payment_methods" | "cancel" | "refund";
export type OrderJob = "cancel" | "refund";

/** An Airflow task instance: the latest run of one job for one site. */
export type Run = {
  readonly dag_id: string;
  readonly run_id: string;
  readonly task_id: string;
  readonly map_index: number | null;
  readonly state: string | null;
  readonly run_after: string | null;
};

export type EditMissing = { readonly kind: "dag" | "connection"; readonly name: string };

/** Orders by status: `to_do` plus KOMOJU outcomes ("Cancelled", "Refunded", "Pending", "Rejected", "Failed"). */
export type StatusCounts = Readonly<Record<string, number>>;

export type Site = {
  readonly site_id: string;
  readonly name: string | null;
  readonly komoju_conn_id: string;
  readonly notify_emails: readonly string[];
  readonly email_locale: "ja" | "en";
  readonly email_enabled: boolean;
  readonly active: boolean;
  readonly can_edit: boolean;
  readonly edit_missing: readonly EditMissing[];
  /** A job absent: the user may not read its DAG. null: it never ran for this site. */
  readonly latest_runs: Partial<Record<Job, Run | null>>;
  readonly counts: Partial<Record<OrderJob, StatusCounts>>;
  /** When a cancel/refund run last looked at the site (a site with nothing to do gets no task). */
  readonly last_checked?: Partial<Record<OrderJob, SiteCheck>>;
  readonly to_settle: number;
  readonly pending: number;
};

export type SiteCheck = {
  readonly checked_at: string | null;
  readonly had_work: boolean;
  readonly run_id: string | null;
};

export type Overview = {
  readonly user: string;
  readonly can_read: Readonly<Record<string, boolean>>;
  readonly runs_unknown: boolean;
  readonly sites: readonly Site[];
};

export type PaymentMethod = {
  readonly type_slug: string;
  readonly currency: string;
  readonly name_en: string | null;
  readonly name_ja: string | null;
  readonly name_ko: string | null;
  readonly subtypes: readonly string[];
  readonly enabled: boolean;
  readonly available: boolean;
  readonly position: number;
};

export type OrderToSettle = {
  readonly job: OrderJob;
  readonly order_no: string;
  readonly status: string;
  readonly reason: string;
  readonly amount_text: string;
  readonly recorded_at: string;
  readonly emailed_at: string | null;
};

export type PendingOrder = {
  readonly job: OrderJob;
  readonly order_no: string;
  readonly since: string;
  readonly response: string;
  readonly amount_text: string;
  readonly customer_link: string | null;
};

export type Change = {
  readonly changed_at: string;
  readonly changed_by: string;
  readonly channel: string;
  readonly action: string;
  readonly subject: string | null;
  readonly field: string | null;
  readonly old_value: unknown;
  readonly new_value: unknown;
};

export type SiteDetails = Site & {
  /** null: the user may not read the payment-method update DAG. */
  readonly payment_methods: {
    readonly can_edit: boolean;
    readonly edit_missing: readonly EditMissing[];
    readonly methods: readonly PaymentMethod[];
  } | null;
  readonly orders: {
    readonly counts: Partial<Record<OrderJob, StatusCounts>>;
    readonly to_settle: readonly OrderToSettle[];
    readonly pending: readonly PendingOrder[];
  };
  readonly recent_changes: readonly Change[];
};

/** The fields of a site that the settings form may change. */
export type SiteUpdate = Partial<{
  name: string;
  notify_emails: string[];
  email_locale: "ja" | "en";
  email_enabled: boolean;
  active: boolean;
}>;

export type Changes = { readonly changes: readonly Record<string, unknown>[] };

export type RunSiteCounts = {
  readonly succeeded: number;
  readonly pending: number;
  readonly rejected: number;
  readonly failed: number;
  readonly final_failures: number;
  readonly not_sent: number;
  readonly dry_run: boolean;
};

export type RunSite = {
  readonly site_id: string;
  readonly name: string | null;
  readonly state: string | null;
  readonly map_index: number | null;
  /** Not in the API as specified; linked when the backend adds it. */
  readonly task_id?: string;
  /** null: the site's task left no summary (it failed early). */
  readonly counts: RunSiteCounts | null;
  readonly failures: readonly { order_no: string; status: string; reason: string; amount_text: string }[];
  readonly email: { readonly state: "sent" | "not_sent" | "off" | "none"; readonly recipients: number };
};

export type RunReport = {
  readonly dag_id: string;
  readonly run_id: string;
  /** null: not a KOMOJU cancel or refund DAG. */
  readonly job: OrderJob | null;
  readonly sites: readonly RunSite[];
};

export type Dashboard = {
  readonly to_settle: number;
  readonly pending: number;
  readonly sites: readonly { site_id: string; name: string | null; to_settle: number; pending: number }[];
};

// ---- the calls ---------------------------------------------------------------------------------------------

export const paths = {
  overview: () => "overview",
  site: (siteId: string) => `sites/${segment(siteId)}`,
  toggle: (siteId: string) => `sites/${segment(siteId)}/payment-methods/toggle`,
  move: (siteId: string) => `sites/${segment(siteId)}/payment-methods/move`,
  run: (dagId: string, runId: string) => `runs/${segment(dagId)}/${segment(runId)}`,
  dashboard: () => "dashboard",
};

export const updateSite = (siteId: string, update: SiteUpdate): Promise<Changes> =>
  postJson<Changes>(paths.site(siteId), update);

export const toggleMethod = (
  siteId: string,
  method: Pick<PaymentMethod, "type_slug" | "currency">,
  enabled: boolean,
): Promise<Changes> =>
  postJson<Changes>(paths.toggle(siteId), { type_slug: method.type_slug, currency: method.currency, enabled });

export const moveMethod = (
  siteId: string,
  method: Pick<PaymentMethod, "type_slug" | "currency">,
  position: number,
): Promise<Changes> =>
  postJson<Changes>(paths.move(siteId), { type_slug: method.type_slug, currency: method.currency, position });
