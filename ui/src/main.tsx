/**
 * The bundle's entry. Evaluating it registers every app's component under its `react_apps` name (see apps.ts);
 * the default export becomes `globalThis.AirflowPlugin` through the UMD wrapper (vite.config.ts).
 */
import type { FC } from "react";

import { APP_NAMES, type PluginProps } from "./apps";
import { DashboardWidget } from "./pages/DashboardWidget";
import { KomojuPage } from "./pages/KomojuPage";
import { RunTab } from "./pages/RunTab";

const COMPONENTS: Record<string, FC<PluginProps>> = {
  [APP_NAMES.nav]: KomojuPage,
  [APP_NAMES.dagRun]: RunTab,
  [APP_NAMES.dashboard]: DashboardWidget,
};

for (const [name, component] of Object.entries(COMPONENTS)) {
  Reflect.set(globalThis, name, component);
}

export default KomojuPage;
