import { describe, expect, it } from "vitest";

import { hostTimeZone, TIMEZONE_STORAGE_KEY } from "./host";
import { makeLocale } from "./locale";

describe("locale", () => {
  it("shows times in the host's zone as YYYY-MM-DD HH:mm, and a missing time as a dash", () => {
    expect(makeLocale("ja", "Asia/Tokyo").dateTime("2026-12-02T15:30:00+00:00")).toBe("2026-12-03 00:30");
    expect(makeLocale("en", "UTC").dateTime("2026-12-02T15:30:00+00:00")).toBe("2026-12-02 15:30");
    expect(makeLocale("en", "UTC").dateTime(null)).toBe("—");
  });

  it("speaks Japanese for any ja tag and English for everything else", () => {
    expect(makeLocale("ja-JP", "UTC").language).toBe("ja");
    expect(makeLocale("fr", "UTC").language).toBe("en");
    expect(makeLocale("ko", "UTC").text.save).toBe("Save");
  });

  it("reads the zone the host stored (JSON-encoded), ignoring one the browser does not know", () => {
    localStorage.setItem(TIMEZONE_STORAGE_KEY, JSON.stringify("America/New_York"));
    expect(hostTimeZone()).toBe("America/New_York");
    localStorage.setItem(TIMEZONE_STORAGE_KEY, JSON.stringify("Not/AZone"));
    expect(hostTimeZone()).toBe(Intl.DateTimeFormat().resolvedOptions().timeZone);
  });
});
