/**
 * The test double of the Airflow UI: Chakra's default system stands in for the host's ChakraProvider, a
 * MemoryRouter for its router, localStorage for the user's language and time zone; `fakeApi` answers the
 * plugin's API calls and records them.
 */
import { ChakraProvider, defaultSystem } from "@chakra-ui/react";
import { render } from "@testing-library/react";
import type { ReactNode } from "react";
import { MemoryRouter, useLocation } from "react-router-dom";
import { vi } from "vitest";

import { LANGUAGE_STORAGE_KEY, TIMEZONE_STORAGE_KEY } from "../host";

export const API = "/komoju/api/";

/** Shows where the router is, so a test can see a navigation. */
const WhereAmI = () => {
  const location = useLocation();

  return <output data-testid="location">{`${location.pathname}${location.search}`}</output>;
};

export const renderInHost = (
  ui: ReactNode,
  { language = "en", path = "/plugin/komoju" }: { language?: string; path?: string } = {},
) => {
  localStorage.setItem(LANGUAGE_STORAGE_KEY, language);
  localStorage.setItem(TIMEZONE_STORAGE_KEY, JSON.stringify("Asia/Tokyo"));

  return render(
    <ChakraProvider value={defaultSystem}>
      <MemoryRouter initialEntries={[path]}>
        {ui}
        <WhereAmI />
      </MemoryRouter>
    </ChakraProvider>,
  );
};

type Answer = { status?: number; body: unknown };
type Handler = (body: unknown) => Answer | unknown;

export type RecordedCall = {
  method: string;
  /** Under /komoju/api/, decoded. */
  path: string;
  /** The URL's path as sent, encoded. */
  pathname: string;
  body: unknown;
  credentials?: RequestCredentials;
};

/**
 * A fetch that answers `"<METHOD> <path under /komoju/api/>"` from `routes` (a handler returning `{status, body}`
 * or just a body) and 404 otherwise. `calls` lists every request, bodies parsed.
 */
export const fakeApi = (routes: Record<string, Handler | unknown>) => {
  const calls: RecordedCall[] = [];
  const fetchMock = vi.fn(async (input: RequestInfo | URL, init: RequestInit = {}) => {
    const url = new URL(String(input));
    const method = init.method ?? "GET";
    const path = decodeURIComponent(url.pathname.slice(API.length));
    const body = typeof init.body === "string" ? JSON.parse(init.body) : undefined;

    calls.push({ body, credentials: init.credentials, method, path, pathname: url.pathname });
    if (!url.pathname.startsWith(API) || !(`${method} ${path}` in routes)) {
      return json(404, { detail: `No route ${method} ${url.pathname}`, field: null });
    }
    const route = routes[`${method} ${path}`];
    const answer = typeof route === "function" ? (route as Handler)(body) : route;

    return isAnswer(answer) ? json(answer.status ?? 200, answer.body) : json(200, answer);
  });

  vi.stubGlobal("fetch", fetchMock);

  return {
    calls,
    /** The requests with this method and path. */
    callsTo: (method: string, path: string) => calls.filter((call) => call.method === method && call.path === path),
  };
};

export const answer = (status: number, body: unknown): Answer => ({ body, status });

const isAnswer = (value: unknown): value is Answer =>
  typeof value === "object" && value !== null && "status" in value && "body" in value;

const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { headers: { "Content-Type": "application/json" }, status });
