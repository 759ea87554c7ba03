/**
 * Builds the plugin as ONE UMD file, ../plugins/komoju/ui_dist/main.js, the way Airflow 3.3's UI loads a
 * `react_apps` bundle: it `import()`s `bundle_url` and then reads the component from `globalThis[<app name>]`,
 * or from `globalThis.AirflowPlugin` (the UMD global this build assigns). Module exports are ignored, so an
 * ES-module build would not work; UMD run as a module finds no `exports`/`define` and writes to globalThis.
 *
 * React, ReactDOM, the JSX runtime, Chakra UI and Emotion are NOT bundled: the 3.3 host puts its own copies on
 * globalThis (airflow/ui/src/main.tsx: React, ReactDOM, ReactJSXRuntime, ReactRouterDOM, ChakraUI,
 * EmotionReact), so the plugin renders inside the host's React tree and ChakraProvider and inherits its theme,
 * light and dark. The versions in package.json match the host's (React 19.2.8) for types and tests only.
 */
import { resolve } from "node:path";
import { defineConfig } from "vitest/config";

const HOST_GLOBALS: Record<string, string> = {
  react: "React",
  "react-dom": "ReactDOM",
  "react/jsx-runtime": "ReactJSXRuntime",
  "react-router-dom": "ReactRouterDOM",
  "@chakra-ui/react": "ChakraUI",
  "@emotion/react": "EmotionReact",
};

export default defineConfig(({ command }) => ({
  build: {
    outDir: resolve(import.meta.dirname, "../plugins/komoju/ui_dist"),
    emptyOutDir: true,
    // Deterministic bytes (make ui-check compares the committed bundle with a fresh build): no source maps
    // with absolute paths, no hashes, no copied public/ folder.
    sourcemap: false,
    copyPublicDir: false,
    reportCompressedSize: false,
    lib: {
      entry: resolve(import.meta.dirname, "src/main.tsx"),
      formats: ["umd"],
      name: "AirflowPlugin",
      fileName: () => "main.js",
    },
    rollupOptions: {
      external: Object.keys(HOST_GLOBALS),
      output: { globals: HOST_GLOBALS, exports: "default" },
    },
  },
  // Only for the bundle: under Vitest this define would also set process.env.NODE_ENV and load production React.
  define: command === "build" ? { "process.env.NODE_ENV": JSON.stringify("production") } : {},
  test: {
    environment: "happy-dom",
    include: ["src/**/*.test.{ts,tsx}"],
    setupFiles: ["src/test/setup.ts"],
    restoreMocks: true,
    unstubGlobals: true,
  },
}));
