import { screen, waitFor, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";

import { dashboard } from "../test/fixtures";
import { answer, fakeApi, renderInHost } from "../test/host";
import { DashboardWidget } from "./DashboardWidget";

describe("DashboardWidget", () => {
  it("sums up what needs a person, per site, linked to the KOMOJU page", async () => {
    fakeApi({ "GET dashboard": dashboard() });

    renderInHost(<DashboardWidget />, { path: "/" });

    const card = await screen.findByTestId("komoju-dashboard");
    const summary = within(card).getByRole("link", { name: "KOMOJU: 4 orders to settle by hand, 2 pending" });

    expect(summary.getAttribute("href")).toBe("/plugin/komoju");
    const lines = [...card.querySelectorAll("li")];

    expect(lines.map((line) => line.dataset.siteId)).toEqual(["tokyo", "osaka"]);
    expect(lines[0]?.textContent).toBe("東京店tokyo3 to settle by hand, 2 pending");
    expect(within(lines[1] as HTMLElement).getByRole("link", { name: "osaka" }).getAttribute("href")).toBe(
      "/plugin/komoju?site=osaka",
    );
  });

  it("in Japanese, and says when nothing needs a person", async () => {
    fakeApi({ "GET dashboard": { pending: 0, sites: [], to_settle: 0 } });

    renderInHost(<DashboardWidget />, { language: "ja-JP", path: "/" });

    const card = await screen.findByTestId("komoju-dashboard");

    expect(within(card).getByRole("link").textContent).toBe("KOMOJU: 手動対応が必要な注文も確認待ちの注文もありません");
    expect(card.querySelectorAll("li")).toHaveLength(0);
  });

  it("counts in Japanese", async () => {
    fakeApi({ "GET dashboard": dashboard() });

    renderInHost(<DashboardWidget />, { language: "ja", path: "/" });

    expect((await screen.findAllByRole("link"))[0]?.textContent).toBe("KOMOJU: 手動対応が必要な注文 4 件、確認待ち 2 件");
  });

  it("shows nothing to a user the API refuses, and the server's sentence for other errors", async () => {
    const api = fakeApi({ "GET dashboard": answer(403, { detail: "Forbidden", field: null }) });
    const { unmount } = renderInHost(<DashboardWidget />, { path: "/" });

    await waitFor(() => expect(api.calls).toHaveLength(1));
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(screen.queryByTestId("komoju-dashboard")).toBeNull();
    unmount();

    fakeApi({ "GET dashboard": answer(500, { detail: "The KOMOJU store is unreachable.", field: null }) });
    renderInHost(<DashboardWidget />, { path: "/" });
    expect((await screen.findByRole("alert")).textContent).toBe("The KOMOJU store is unreachable.");
  });
});
