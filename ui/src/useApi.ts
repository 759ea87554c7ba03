import { useEffect, useState } from "react";

import { getJson } from "./api";

export type ApiState<T> = {
  /** The last answer for this path (kept while a reload is under way, so the page does not flicker). */
  readonly data: T | undefined;
  /** The error of the last call for this path, if it failed. */
  readonly error: unknown;
  readonly loading: boolean;
};

type Result<T> = { readonly path: string; readonly key: string; readonly data?: T; readonly error?: unknown };

/**
 * GETs `path` (under komoju/api/) and again whenever `reloadKey` changes; `null` fetches nothing. The state is
 * derived from the last finished call, so no state is set synchronously inside the effect.
 */
export const useApi = <T>(path: string | null, reloadKey = 0): ApiState<T> => {
  const [result, setResult] = useState<Result<T> | undefined>(undefined);
  const key = `${path}#${reloadKey}`;

  useEffect(() => {
    if (path === null) {
      return undefined;
    }
    const controller = new AbortController();

    getJson<T>(path, controller.signal).then(
      (data) => setResult({ data, key, path }),
      (error: unknown) => {
        if (!controller.signal.aborted) {
          // A failed reload keeps the data already shown, next to the error.
          setResult((previous) => ({ data: previous?.path === path ? previous.data : undefined, error, key, path }));
        }
      },
    );

    return () => controller.abort();
  }, [path, key]);

  const samePath = result !== undefined && result.path === path;

  return {
    data: samePath ? result.data : undefined,
    error: samePath && result.key === key ? result.error : undefined,
    loading: path !== null && result?.key !== key,
  };
};
