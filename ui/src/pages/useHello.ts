import { useEffect, useState } from "react";

import { ApiError, getHello } from "../api";

export type HelloState = { status: "loading" } | { status: "ok" } | { status: "error"; httpStatus?: number };

/** Calls GET /komoju-ui/api/hello once: proof that the UI's login cookie reaches the plugin's own API. */
export const useHello = (): HelloState => {
  const [state, setState] = useState<HelloState>({ status: "loading" });

  useEffect(() => {
    const controller = new AbortController();

    getHello(controller.signal)
      .then((hello) => setState(hello.ok ? { status: "ok" } : { status: "error" }))
      .catch((error: unknown) => {
        if (!controller.signal.aborted) {
          setState({ status: "error", httpStatus: error instanceof ApiError ? error.status : undefined });
        }
      });

    return () => controller.abort();
  }, []);

  return state;
};
