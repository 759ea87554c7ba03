/**
 * What the Airflow 3.3 UI (the host) tells a plugin about the user's settings, read from the page itself: the
 * host shares React and Chakra UI but not its i18next instance nor its next-themes context, so a plugin cannot
 * use `useTranslation()` or the host's `useColorMode()`.
 *
 * - Language: i18next's language detector caches the chosen language in localStorage under `i18nextLng`
 *   (Airflow's language selector writes it there too) and the host mirrors every change into
 *   `<html lang dir>`. On first load `lang` may still be the page's default ("en"), so localStorage comes first.
 * - Color mode: next-themes (`attribute: "class"`, storage key `theme`) puts `light` or `dark` on `<html>`,
 *   already resolved when the user picked "system". Chakra's semantic tokens follow that class by themselves.
 *
 * - Time zone: the host's time-zone selector stores the chosen zone JSON-encoded in localStorage under
 *   `timezone` and announces the change with a "local-storage" event on window ("storage" from other tabs);
 *   unset, the host shows the browser's zone.
 *
 * The hooks re-render when the host changes `<html>`'s attributes or the stored zone, so the plugin follows the
 * user's settings without a reload.
 */
import { useSyncExternalStore } from "react";

export type ColorMode = "light" | "dark";

export const LANGUAGE_STORAGE_KEY = "i18nextLng";

export const TIMEZONE_STORAGE_KEY = "timezone";

const subscribeToHtmlAttributes = (onChange: () => void): (() => void) => {
  const observer = new MutationObserver(onChange);

  observer.observe(document.documentElement, { attributeFilter: ["class", "lang", "dir"], attributes: true });

  return () => observer.disconnect();
};

const subscribeToStorage = (onChange: () => void): (() => void) => {
  globalThis.addEventListener("storage", onChange);
  globalThis.addEventListener("local-storage", onChange);

  return () => {
    globalThis.removeEventListener("storage", onChange);
    globalThis.removeEventListener("local-storage", onChange);
  };
};

const stored = (key: string): string | null => {
  try {
    return globalThis.localStorage.getItem(key);
  } catch {
    return null; // storage disabled: fall back to the page
  }
};

const storedLanguage = (): string | null => stored(LANGUAGE_STORAGE_KEY);

const isTimeZone = (zone: string): boolean => {
  try {
    new Intl.DateTimeFormat("en", { timeZone: zone });
    return true;
  } catch {
    return false;
  }
};

/** The language the Airflow UI is shown in (a BCP 47 tag such as "ja" or "en"). */
export const hostLanguage = (): string =>
  storedLanguage() || document.documentElement.lang || globalThis.navigator.language || "en";

/** The color mode the Airflow UI is shown in. */
export const hostColorMode = (): ColorMode =>
  document.documentElement.classList.contains("dark") ? "dark" : "light";

/** The IANA time zone the Airflow UI shows times in. */
export const hostTimeZone = (): string => {
  const raw = stored(TIMEZONE_STORAGE_KEY);
  let zone: unknown = raw;

  try {
    zone = raw === null ? null : JSON.parse(raw);
  } catch {
    // stored unencoded: take it as it is
  }

  return typeof zone === "string" && isTimeZone(zone) ? zone : Intl.DateTimeFormat().resolvedOptions().timeZone;
};

export const useHostLanguage = (): string => useSyncExternalStore(subscribeToHtmlAttributes, hostLanguage);

export const useHostColorMode = (): ColorMode => useSyncExternalStore(subscribeToHtmlAttributes, hostColorMode);

export const useHostTimeZone = (): string => useSyncExternalStore(subscribeToStorage, hostTimeZone);

/**
 * The URL of one of the plugin's own endpoints, resolved against the host's `<base href>` so that it still
 * works when Airflow is served under a sub-path.
 */
export const pluginUrl = (path: string): string => new URL(path.replace(/^\//u, ""), document.baseURI).href;
