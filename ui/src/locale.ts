/** The user's language and time zone, as the host shows them, with the formatting the views share. */
import { useMemo } from "react";

import { useHostLanguage, useHostTimeZone } from "./host";
import { isJapanese, messagesFor, type Messages } from "./messages";

export type Locale = {
  readonly text: Messages;
  /** "ja" or "en": the language the plugin speaks (any host language other than Japanese gets English). */
  readonly language: "ja" | "en";
  readonly timeZone: string;
  /** "2026-12-02 14:00" in the host's time zone; "—" for no time. */
  readonly dateTime: (iso: string | null | undefined) => string;
  readonly count: (value: number) => string;
};

const pad = (parts: Intl.DateTimeFormatPart[], type: Intl.DateTimeFormatPartTypes): string =>
  parts.find((part) => part.type === type)?.value ?? "";

export const makeLocale = (hostLanguage: string, timeZone: string): Locale => {
  const language = isJapanese(hostLanguage) ? "ja" : "en";
  const dateFormat = new Intl.DateTimeFormat("en-US", {
    day: "2-digit",
    hour: "2-digit",
    hourCycle: "h23",
    minute: "2-digit",
    month: "2-digit",
    timeZone,
    year: "numeric",
  });
  const numberFormat = new Intl.NumberFormat(language);

  return {
    count: (value) => numberFormat.format(value),
    dateTime: (iso) => {
      const date = iso ? new Date(iso) : null;

      if (date === null || Number.isNaN(date.getTime())) {
        return iso ?? "—";
      }
      const parts = dateFormat.formatToParts(date);

      const [year, month, day, hour, minute] = ["year", "month", "day", "hour", "minute"].map((type) =>
        pad(parts, type as Intl.DateTimeFormatPartTypes),
      );

      return `${year}-${month}-${day} ${hour}:${minute}`;
    },
    language,
    text: messagesFor(language),
    timeZone,
  };
};

export const useLocale = (): Locale => {
  const hostLanguage = useHostLanguage();
  const timeZone = useHostTimeZone();

  return useMemo(() => makeLocale(hostLanguage, timeZone), [hostLanguage, timeZone]);
};
