/** Calls to the plugin's FastAPI app (plugins/komoju/react_app.py), authenticated by the UI's `_token` cookie. */
import { pluginUrl } from "./host";

export class ApiError extends Error {
  readonly status: number;

  constructor(status: number, message: string) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

export const getJson = async <T>(path: string, signal?: AbortSignal): Promise<T> => {
  const response = await fetch(pluginUrl(path), {
    credentials: "same-origin",
    headers: { Accept: "application/json" },
    signal,
  });

  if (!response.ok) {
    throw new ApiError(response.status, `${path} answered HTTP ${response.status}`);
  }

  return (await response.json()) as T;
};

export type Hello = { ok: boolean };

export const getHello = (signal?: AbortSignal): Promise<Hello> => getJson<Hello>("komoju-ui/api/hello", signal);
