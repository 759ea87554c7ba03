import { describe, expect, it } from "vitest";

import { APP_NAMES } from "./apps";
import { DashboardWidget } from "./pages/DashboardWidget";
import { KomojuPage } from "./pages/KomojuPage";
import { RunTab } from "./pages/RunTab";

describe("the bundle's entry", () => {
  it("registers each app's component under its react_apps name, the names all different", async () => {
    const entry = await import("./main");

    expect(Reflect.get(globalThis, APP_NAMES.nav)).toBe(KomojuPage);
    expect(Reflect.get(globalThis, APP_NAMES.dagRun)).toBe(RunTab);
    expect(Reflect.get(globalThis, APP_NAMES.dashboard)).toBe(DashboardWidget);
    expect(new Set(Object.values(APP_NAMES)).size).toBe(3);
    expect(entry.default).toBe(KomojuPage);
  });
});
