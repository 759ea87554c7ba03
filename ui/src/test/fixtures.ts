/** API answers as the backend is specified to send them (see ui/README.md), for the component tests. */
import type { Dashboard, Overview, RunReport, Site, SiteDetails } from "../api";

export const CANCEL_RUN_ID = "scheduled__2026-12-02T05:00:00+00:00";

export const tokyo: Site = {
  active: true,
  can_edit: true,
  counts: {
    cancel: { Cancelled: 10, Failed: 2, Pending: 1, Rejected: 0, to_do: 3 },
    refund: { Failed: 1, Pending: 1, Refunded: 7, Rejected: 1, to_do: 0 },
  },
  edit_missing: [],
  email_enabled: true,
  email_locale: "ja",
  komoju_conn_id: "komoju_default",
  latest_runs: {
    cancel: {
      dag_id: "komoju_cancel_process",
      map_index: 0,
      run_after: "2026-12-02T05:00:00+00:00",
      run_id: CANCEL_RUN_ID,
      state: "success",
      task_id: "cancel_site",
    },
    payment_methods: {
      dag_id: "komoju_update_payment_methods",
      map_index: 0,
      run_after: "2026-12-01T21:00:00+00:00",
      run_id: "manual__2026-12-01T21:00:00+00:00",
      state: "up_for_retry",
      task_id: "update_site",
    },
    refund: null,
  },
  name: "東京店",
  notify_emails: ["ops@example.com", "shop@example.com"],
  pending: 2,
  site_id: "tokyo",
  to_settle: 3,
};

export const osaka: Site = {
  ...tokyo,
  active: true,
  counts: { cancel: { Cancelled: 4, Failed: 0, Pending: 0, Rejected: 1, to_do: 0 } },
  email_locale: "en",
  komoju_conn_id: "komoju_osaka",
  latest_runs: {
    cancel: {
      dag_id: "komoju_cancel_process",
      map_index: 1,
      run_after: "2026-12-02T05:00:00+00:00",
      run_id: CANCEL_RUN_ID,
      state: "failed",
      task_id: "cancel_site",
    },
  },
  name: null,
  notify_emails: [],
  pending: 0,
  site_id: "osaka",
  to_settle: 1,
};

export const legacy: Site = {
  ...osaka,
  active: false,
  counts: {},
  latest_runs: { cancel: null, payment_methods: null, refund: null },
  name: "Old shop",
  site_id: "legacy",
  to_settle: 0,
};

export const overview = (patch: Partial<Overview> = {}): Overview => ({
  can_read: { komoju_cancel_process: true, komoju_refund_process: true, komoju_update_payment_methods: true },
  runs_unknown: false,
  sites: [tokyo, osaka, legacy],
  user: "admin",
  ...patch,
});

export const tokyoDetails = (patch: Partial<SiteDetails> = {}): SiteDetails => ({
  ...tokyo,
  orders: {
    counts: tokyo.counts,
    pending: [
      {
        amount_text: "800 JPY",
        customer_link: "https://komoju.example/customer/1002",
        job: "refund",
        order_no: "1002",
        response: "KOMOJU accepted the refund and waits for the customer's bank account.",
        since: "2026-12-01T03:00:00+00:00",
      },
      {
        amount_text: "12,000 JPY",
        customer_link: null,
        job: "cancel",
        order_no: "1003",
        response: "capture pending",
        since: "2026-12-01T04:00:00+00:00",
      },
    ],
    to_settle: [
      {
        amount_text: "1,500 JPY",
        emailed_at: "2026-12-02T05:10:00+00:00",
        job: "refund",
        order_no: "1001",
        reason: "HTTP 422 not_refundable: the payment is too old to be refunded",
        recorded_at: "2026-12-02T05:01:00+00:00",
        status: "Rejected",
      },
      {
        amount_text: "2,000 JPY",
        emailed_at: null,
        job: "cancel",
        order_no: "1004",
        reason: "HTTP 500 internal_server_error after 5 attempts",
        recorded_at: "2026-12-02T05:02:00+00:00",
        status: "Failed",
      },
    ],
  },
  payment_methods: {
    can_edit: true,
    edit_missing: [],
    methods: [
      {
        available: true,
        currency: "JPY",
        enabled: false,
        name_en: "Credit card",
        name_ja: "クレジットカード",
        name_ko: null,
        position: 2,
        subtypes: ["visa", "master"],
        type_slug: "credit_card",
      },
      {
        available: true,
        currency: "JPY",
        enabled: true,
        name_en: "Konbini",
        name_ja: "コンビニ",
        name_ko: null,
        position: 1,
        subtypes: ["seven-eleven", "lawson"],
        type_slug: "konbini",
      },
      {
        available: false,
        currency: "JPY",
        enabled: true,
        name_en: "PayPay",
        name_ja: "PayPay",
        name_ko: null,
        position: 3,
        subtypes: [],
        type_slug: "paypay",
      },
    ],
  },
  recent_changes: [
    {
      action: "komoju.payment_method.toggle",
      changed_at: "2026-12-02T01:00:00+00:00",
      changed_by: "admin",
      channel: "page",
      field: "enabled",
      new_value: false,
      old_value: true,
      subject: "credit_card JPY",
    },
    {
      action: "komoju.site.update",
      changed_at: "2026-12-01T01:00:00+00:00",
      changed_by: "ops",
      channel: "cli",
      field: "email_locale",
      new_value: "ja",
      old_value: "en",
      subject: null,
    },
  ],
  ...patch,
});

/** What a user whose role may read but not edit sees: the same data, every can_edit false. */
export const viewerOverview = (): Overview => ({
  ...overview(),
  sites: overview().sites.map((site) => ({
    ...site,
    can_edit: false,
    edit_missing: [
      { kind: "dag", name: "komoju_refund_process" },
      { kind: "connection", name: site.komoju_conn_id },
    ],
  })),
  user: "viewer",
});

export const viewerTokyoDetails = (): SiteDetails => {
  const details = tokyoDetails();

  return {
    ...details,
    can_edit: false,
    edit_missing: [
      { kind: "dag", name: "komoju_refund_process" },
      { kind: "connection", name: "komoju_default" },
    ],
    payment_methods: details.payment_methods && {
      ...details.payment_methods,
      can_edit: false,
      edit_missing: [{ kind: "dag", name: "komoju_update_payment_methods" }],
    },
  };
};

export const cancelRun = (): RunReport => ({
  dag_id: "komoju_cancel_process",
  job: "cancel",
  run_id: CANCEL_RUN_ID,
  sites: [
    {
      counts: { dry_run: false, failed: 2, final_failures: 1, not_sent: 0, pending: 1, rejected: 0, succeeded: 5 },
      email: { recipients: 2, state: "sent" },
      failures: [
        {
          amount_text: "1,500 JPY",
          order_no: "1001",
          reason: "HTTP 422 not_cancellable: the payment was already captured",
          status: "Failed",
        },
      ],
      map_index: 0,
      name: "東京店",
      site_id: "tokyo",
      state: "success",
    },
    {
      counts: null,
      email: { recipients: 0, state: "none" },
      failures: [],
      map_index: 1,
      name: null,
      site_id: "osaka",
      state: "failed",
    },
  ],
});

export const dashboard = (): Dashboard => ({
  pending: 2,
  sites: [
    { name: "東京店", pending: 2, site_id: "tokyo", to_settle: 3 },
    { name: null, pending: 0, site_id: "osaka", to_settle: 1 },
  ],
  to_settle: 4,
});
