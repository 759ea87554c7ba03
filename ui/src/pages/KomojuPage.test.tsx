import { fireEvent, screen, waitFor, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";

import { CANCEL_RUN_ID, osaka, overview, tokyoDetails, viewerOverview, viewerTokyoDetails } from "../test/fixtures";
import { answer, fakeApi, renderInHost } from "../test/host";
import { KomojuPage } from "./KomojuPage";

const siteCards = () => screen.getAllByTestId("komoju-site");

const openTab = async (name: string) => {
  fireEvent.click(await screen.findByRole("tab", { name: new RegExp(name, "u") }));
};

describe("KomojuPage overview", () => {
  it("shows the sites in the order the API gives, inactive ones marked, with their counts", async () => {
    const api = fakeApi({ "GET overview": overview(), "GET sites/tokyo": tokyoDetails() });

    renderInHost(<KomojuPage />);

    await waitFor(() => expect(siteCards()).toHaveLength(3));
    expect(siteCards().map((card) => card.dataset.siteId)).toEqual(["tokyo", "osaka", "legacy"]);
    expect(siteCards().map((card) => within(card).getByTestId("komoju-site-active").textContent)).toEqual([
      "Active",
      "Active",
      "Inactive",
    ]);
    expect(siteCards()[2]?.dataset.active).toBe("false");

    const tokyoCard = siteCards()[0] as HTMLElement;

    expect(within(tokyoCard).getByRole("heading", { name: "東京店" })).toBeTruthy();
    expect(within(tokyoCard).getByTestId("komoju-to-settle").textContent).toBe("3 orders to settle by hand");
    expect(within(tokyoCard).getByTestId("komoju-pending").textContent).toBe("2 pending at KOMOJU");
    const counts = within(tokyoCard).getByTestId("komoju-order-counts");
    const cell = (status: string, job: string) =>
      counts.querySelector(`tr[data-status="${status}"] td[data-job="${job}"]`)?.textContent;

    expect(["to_do", "Cancelled", "Refunded", "Pending", "Failed"].map((status) => cell(status, "cancel"))).toEqual([
      "3",
      "10",
      "—",
      "1",
      "2",
    ]);
    expect(cell("Refunded", "refund")).toBe("7");
    // A site without a name is shown by its id.
    expect(within(siteCards()[1] as HTMLElement).getByRole("heading", { name: "osaka" })).toBeTruthy();
    expect(api.calls[0]).toMatchObject({ credentials: "same-origin", method: "GET", path: "overview" });
  });

  it("links each latest run to its task instance in Airflow, through the host's router", async () => {
    fakeApi({ "GET overview": overview(), "GET sites/tokyo": tokyoDetails() });

    renderInHost(<KomojuPage />);

    const tokyoCard = (await screen.findAllByTestId("komoju-site"))[0] as HTMLElement;
    const cancel = within(tokyoCard).getByRole("link", { name: /success/u });

    expect(cancel.getAttribute("href")).toBe(
      `/dags/komoju_cancel_process/runs/${encodeURIComponent(CANCEL_RUN_ID)}/tasks/cancel_site/mapped/0`,
    );
    expect(cancel.textContent).toContain("2026-12-02 14:00"); // 05:00 UTC in the host's zone, Asia/Tokyo
    expect(within(tokyoCard).getByRole("link", { name: /up for retry/u }).getAttribute("href")).toBe(
      "/dags/komoju_update_payment_methods/runs/manual__2026-12-01T21%3A00%3A00%2B00%3A00/tasks/update_site/mapped/0",
    );
    expect(tokyoCard.querySelector('[data-job="refund"]')?.textContent).toContain("never ran for this site");
    // osaka may not read the refund DAG: no line for it at all.
    const osakaCard = screen.getAllByTestId("komoju-site")[1] as HTMLElement;

    expect(osakaCard.querySelector('[data-job="refund"]')).toBeNull();
    expect(within(osakaCard).getByRole("link", { name: /failed/u }).getAttribute("href")).toMatch(/\/mapped\/1$/u);
  });

  it("says when a run last found nothing to do for a site, after its latest task", async () => {
    const idle = {
      ...osaka,
      last_checked: {
        cancel: { checked_at: "2026-12-02T05:30:00+00:00", had_work: false, run_id: "scheduled__b" },
        refund: { checked_at: "2026-12-02T04:00:00+00:00", had_work: false, run_id: "scheduled__a" },
      },
    };
    fakeApi({ "GET overview": overview({ sites: [idle] }), "GET sites/osaka": tokyoDetails() });

    renderInHost(<KomojuPage />);

    const card = (await screen.findAllByTestId("komoju-site"))[0] as HTMLElement;
    const idleChecks = within(card).getAllByTestId("komoju-idle-check");
    expect(idleChecks.map((check) => check.textContent)).toEqual(["checked 2026-12-02 14:30: nothing to do"]);
    expect(card.querySelector('[data-job="cancel"]')?.textContent).toContain("nothing to do");
  });

  it("says when Airflow's run history could not be read and still shows the rest", async () => {
    fakeApi({ "GET overview": overview({ runs_unknown: true }), "GET sites/tokyo": tokyoDetails() });

    renderInHost(<KomojuPage />);

    expect((await screen.findByTestId("komoju-runs-unknown")).textContent).toContain("could not be read");
    expect(screen.queryAllByRole("link", { name: /success/u })).toHaveLength(0);
    expect(screen.getAllByTestId("komoju-order-counts").length).toBeGreaterThan(0);
  });

  it("translates statuses, states and labels into Japanese", async () => {
    fakeApi({ "GET overview": overview(), "GET sites/tokyo": tokyoDetails() });

    renderInHost(<KomojuPage />, { language: "ja" });

    const tokyoCard = (await screen.findAllByTestId("komoju-site"))[0] as HTMLElement;
    const counts = within(tokyoCard).getByTestId("komoju-order-counts");
    const headers = [...counts.querySelectorAll("th")].map((header) => header.textContent);
    const statuses = [...counts.querySelectorAll("tbody tr td:first-child")].map((cell) => cell.textContent);

    expect(headers).toEqual(["状態", "キャンセル処理", "返金処理"]);
    expect(statuses).toEqual(["未処理", "キャンセル済み", "返金済み", "処理中 (KOMOJU 確認待ち)", "拒否", "失敗"]);
    expect(within(tokyoCard).getByRole("link", { name: /成功/u })).toBeTruthy();
    expect(within(tokyoCard).getByRole("link", { name: /再試行待ち/u })).toBeTruthy();
    expect(within(tokyoCard).getByTestId("komoju-to-settle").textContent).toBe("手動対応が必要な注文 3 件");
    expect(within(siteCards()[2] as HTMLElement).getByTestId("komoju-site-active").textContent).toBe("無効");
  });

  it("opens another site's details through the URL", async () => {
    const osakaDetails = { ...tokyoDetails(), ...osaka, payment_methods: null };
    const api = fakeApi({
      "GET overview": overview(),
      "GET sites/osaka": osakaDetails,
      "GET sites/tokyo": tokyoDetails(),
    });

    renderInHost(<KomojuPage />);

    const details = await screen.findByTestId("komoju-details");

    expect(await within(details).findByRole("heading", { name: "東京店" })).toBeTruthy();
    fireEvent.click(within(siteCards()[1] as HTMLElement).getByRole("button", { name: "Show details" }));

    expect(screen.getByTestId("location").textContent).toBe("/plugin/komoju?site=osaka");
    expect(await within(screen.getByTestId("komoju-details")).findByRole("heading", { name: "osaka" })).toBeTruthy();
    expect(api.callsTo("GET", "sites/osaka")).toHaveLength(1);
  });

  it("shows the server's sentence when the overview is refused", async () => {
    fakeApi({ "GET overview": answer(403, { detail: "You are not allowed to see KOMOJU sites.", field: null }) });

    renderInHost(<KomojuPage />);

    expect((await screen.findByRole("alert")).textContent).toBe("You are not allowed to see KOMOJU sites.");
  });
});

describe("KomojuPage for a user who may not edit", () => {
  it("disables every control and says which DAGs and connections the role cannot edit", async () => {
    const api = fakeApi({ "GET overview": viewerOverview(), "GET sites/tokyo": viewerTokyoDetails() });

    renderInHost(<KomojuPage />);

    const details = await screen.findByTestId("komoju-settings");
    const note = within(details).getByTestId("komoju-read-only");

    expect(note.textContent).toBe(
      "Read-only: your Airflow role cannot edit the DAG komoju_refund_process, the connection komoju_default.",
    );
    for (const control of details.querySelectorAll("input, textarea, select, button")) {
      expect((control as HTMLInputElement).disabled, control.outerHTML).toBe(true);
    }

    await openTab("Payment methods");
    const table = await screen.findByTestId("komoju-payment-methods");

    expect(screen.getAllByTestId("komoju-read-only")[1]?.textContent).toBe(
      "Read-only: your Airflow role cannot edit the DAG komoju_update_payment_methods.",
    );
    const controls = table.querySelectorAll("input, button");

    expect(controls).toHaveLength(9); // 3 methods: a switch and two arrows each
    for (const control of controls) {
      expect((control as HTMLInputElement).disabled, control.outerHTML).toBe(true);
    }
    fireEvent.click(controls[0] as HTMLElement);
    expect(api.calls.filter((call) => call.method === "POST")).toHaveLength(0);
  });
});
