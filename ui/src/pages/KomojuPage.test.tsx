import { ChakraProvider, defaultSystem } from "@chakra-ui/react";
import { act, cleanup, render, screen } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { LANGUAGE_STORAGE_KEY } from "../host";
import { KomojuPage } from "./KomojuPage";

// In Airflow the host's ChakraProvider wraps the plugin; here Chakra's default system stands in for it.
const renderPage = () =>
  render(
    <ChakraProvider value={defaultSystem}>
      <KomojuPage />
    </ChakraProvider>,
  );

const jsonResponse = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { headers: { "Content-Type": "application/json" }, status });

describe("KomojuPage", () => {
  beforeEach(() => {
    localStorage.clear();
    document.documentElement.className = "";
    document.documentElement.lang = "en";
  });

  afterEach(cleanup);

  it("shows the host's language and color mode and calls the plugin API with the login cookie", async () => {
    localStorage.setItem(LANGUAGE_STORAGE_KEY, "ja");
    document.documentElement.classList.add("dark");
    const fetchMock = vi.fn(async () => jsonResponse(200, { ok: true }));
    vi.stubGlobal("fetch", fetchMock);

    renderPage();

    expect(screen.getByRole("heading", { name: "KOMOJU" })).toBeTruthy();
    expect(screen.getByTestId("komoju-language").textContent).toBe("日本語");
    expect(screen.getByTestId("komoju-color-mode").textContent).toBe("dark");
    expect((await screen.findByTestId("komoju-api")).textContent).toContain("ログイン済み");
    expect(fetchMock).toHaveBeenCalledOnce();
    const [url, init] = fetchMock.mock.calls[0] as unknown as [string, RequestInit];
    expect(new URL(url).pathname).toBe("/komoju-ui/api/hello");
    expect(init.credentials).toBe("same-origin");
  });

  it("follows the host when the user switches to light mode, and reports a refused API call", async () => {
    document.documentElement.classList.add("dark");
    vi.stubGlobal("fetch", vi.fn(async () => jsonResponse(401, { detail: "Not authenticated" })));

    renderPage();
    expect(screen.getByTestId("komoju-color-mode").textContent).toBe("dark");
    expect(screen.getByTestId("komoju-language").textContent).toBe("English");

    await act(async () => {
      document.documentElement.classList.replace("dark", "light");
      await new Promise((resolve) => setTimeout(resolve, 0)); // MutationObserver callbacks are microtasks
    });

    expect(screen.getByTestId("komoju-color-mode").textContent).toBe("light");
    expect((await screen.findByTestId("komoju-api")).textContent).toBe("the API refused (HTTP 401)");
  });
});
