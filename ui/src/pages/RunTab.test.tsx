import { screen, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";

import { CANCEL_RUN_ID, cancelRun } from "../test/fixtures";
import { answer, fakeApi, renderInHost } from "../test/host";
import { RunTab } from "./RunTab";

const RUN_PATH = `runs/komoju_cancel_process/${CANCEL_RUN_ID}`;

const cells = (table: HTMLElement) => [...table.querySelectorAll("td")].map((cell) => cell.textContent);

const headers = (table: HTMLElement) => [...table.querySelectorAll("th")].map((header) => header.textContent);

describe("RunTab", () => {
  it("shows each site's outcome: state, counts, final failures with reasons and amounts, the e-mail", async () => {
    const api = fakeApi({ [`GET ${RUN_PATH}`]: cancelRun() });

    renderInHost(<RunTab dagId="komoju_cancel_process" runId={CANCEL_RUN_ID} />);

    const sites = await screen.findAllByTestId("komoju-run-site");

    expect(sites.map((site) => site.dataset.siteId)).toEqual(["tokyo", "osaka"]);
    const [tokyo, osaka] = sites as [HTMLElement, HTMLElement];

    expect(within(tokyo).getByRole("heading", { name: "東京店" })).toBeTruthy();
    expect(within(tokyo).getByText("success")).toBeTruthy();
    expect(headers(within(tokyo).getByTestId("komoju-run-counts"))).toEqual([
      "Succeeded",
      "Pending",
      "Rejected",
      "Failed",
      "Final failures",
      "Not sent",
    ]);
    expect(cells(within(tokyo).getByTestId("komoju-run-counts"))).toEqual(["5", "1", "0", "2", "1", "0"]);
    expect(cells(within(tokyo).getByTestId("komoju-run-failures"))).toEqual([
      "1001",
      "Failed",
      "1,500 JPY",
      "HTTP 422 not_cancellable: the payment was already captured",
    ]);
    expect(within(tokyo).getByTestId("komoju-run-email").textContent).toBe("sent to 2 recipients");

    // osaka's task failed before it could leave a summary
    expect(within(osaka).getByText("failed")).toBeTruthy();
    expect(within(osaka).queryByTestId("komoju-run-counts")).toBeNull();
    expect(within(osaka).getByText(/left no summary/u)).toBeTruthy();
    expect(within(osaka).queryByTestId("komoju-run-failures")).toBeNull();

    expect(api.calls.map((call) => call.pathname)).toEqual([
      "/komoju/api/runs/komoju_cancel_process/scheduled__2026-12-02T05%3A00%3A00%2B00%3A00",
    ]);
  });

  it("links a site's state to its task instance when the API names the task", async () => {
    const report = cancelRun();

    fakeApi({
      [`GET ${RUN_PATH}`]: { ...report, sites: report.sites.map((site) => ({ ...site, task_id: "cancel_site" })) },
    });

    renderInHost(<RunTab dagId="komoju_cancel_process" runId={CANCEL_RUN_ID} />);

    const osaka = (await screen.findAllByTestId("komoju-run-site"))[1] as HTMLElement;

    expect(within(osaka).getByRole("link", { name: "failed" }).getAttribute("href")).toBe(
      `/dags/komoju_cancel_process/runs/${encodeURIComponent(CANCEL_RUN_ID)}/tasks/cancel_site/mapped/1`,
    );
  });

  it("in Japanese", async () => {
    fakeApi({ [`GET ${RUN_PATH}`]: cancelRun() });

    renderInHost(<RunTab dagId="komoju_cancel_process" runId={CANCEL_RUN_ID} />, { language: "ja" });

    const tokyo = (await screen.findAllByTestId("komoju-run-site"))[0] as HTMLElement;

    expect(headers(within(tokyo).getByTestId("komoju-run-counts"))).toEqual([
      "成功",
      "確認待ち",
      "拒否",
      "失敗",
      "最終的な失敗",
      "未送信",
    ]);
    expect(within(tokyo).getByTestId("komoju-run-email").textContent).toBe("2 名に送信済み");
    expect(tokyo.querySelector('[data-state="success"]')?.textContent).toBe("成功");
  });

  it("says the tab is for the KOMOJU cancel and refund DAGs when the API answers job null", async () => {
    fakeApi({ "GET runs/example_dag/manual__1": { dag_id: "example_dag", job: null, run_id: "manual__1", sites: [] } });

    renderInHost(<RunTab dagId="example_dag" runId="manual__1" />);

    expect((await screen.findByTestId("komoju-not-a-komoju-run")).textContent).toContain(
      "This tab is for the KOMOJU cancel and refund DAGs",
    );
    expect(screen.queryByTestId("komoju-run-site")).toBeNull();
  });

  it("shows the server's sentence for an unknown run", async () => {
    const detail = "No run scheduled__x of komoju_cancel_process.";

    fakeApi({ [`GET ${RUN_PATH}`]: answer(404, { detail, field: null }) });

    renderInHost(<RunTab dagId="komoju_cancel_process" runId={CANCEL_RUN_ID} />);

    expect((await screen.findByRole("alert")).textContent).toBe(detail);
  });
});
