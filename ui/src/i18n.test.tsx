/**
 * A Japanese user sees no English label: every view is rendered in Japanese with every tab and state it has,
 * and what it shows (text and accessible names) must contain none of the English labels, nor any English word
 * at all once KOMOJU's own texts and identifiers (the strings of the API's answers) are taken out.
 */
import { fireEvent, screen, waitFor } from "@testing-library/react";
import { describe, expect, it } from "vitest";

import type { RunSite, RunSiteCounts } from "./api";
import { MESSAGES } from "./messages";
import { DashboardWidget } from "./pages/DashboardWidget";
import { KomojuPage } from "./pages/KomojuPage";
import { RunTab } from "./pages/RunTab";
import { RunStateBadge } from "./components/StateBadge";
import {
  CANCEL_RUN_ID,
  cancelRun,
  dashboard,
  overview,
  tokyoDetails,
  viewerOverview,
  viewerTokyoDetails,
} from "./test/fixtures";
import { answer, fakeApi, renderInHost } from "./test/host";

/** Messages that are the same in both languages: the product, Airflow's "DAG", the CLI. */
const SAME_IN_BOTH = new Set(["KOMOJU", "DAG", "CLI"]);

/** Every string of `value`, deeply (object keys excluded). */
const stringsOf = (value: unknown): string[] => {
  if (typeof value === "string") {
    return [value];
  }
  if (typeof value === "function") {
    return [1, 2, 4].map((n) => String((value as (n: number, m: number) => string)(n, n)));
  }
  if (typeof value === "object" && value !== null) {
    return Object.values(value).flatMap(stringsOf);
  }

  return [];
};

const LATIN_WORD = /[A-Za-z]{2,}/gu;

/** The English labels: every English message (functions called with sample numbers) that has letters. */
const englishLabels = (): string[] => {
  const ja = new Set(stringsOf(MESSAGES.ja));

  return [...new Set(stringsOf(MESSAGES.en))].filter(
    (label) => /[A-Za-z]/u.test(label) && !ja.has(label) && !SAME_IN_BOTH.has(label),
  );
};

/** Latin words the Japanese messages themselves use (KOMOJU, Airflow, DAG, API, ID, ...). */
const JAPANESE_LATIN_WORDS = new Set(stringsOf(MESSAGES.ja).flatMap((message) => message.match(LATIN_WORD) ?? []));

/**
 * What a person reads or a screen reader says, one piece per text node or attribute: text, accessible names,
 * placeholders, titles. The test double's own location display is not part of the plugin.
 */
const shownPieces = (): string[] => {
  const pieces: string[] = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);

  for (let node = walker.nextNode(); node !== null; node = walker.nextNode()) {
    if (!node.parentElement?.closest('[data-testid="location"]')) {
      pieces.push(node.textContent ?? "");
    }
  }
  for (const element of document.body.querySelectorAll("*")) {
    for (const name of ["aria-label", "placeholder", "title", "alt"]) {
      pieces.push(element.getAttribute(name) ?? "");
    }
  }

  return pieces.filter((piece) => piece.trim() !== "");
};

/**
 * Takes out the API's own strings, which are shown as they are (KOMOJU's reasons, identifiers), except those
 * that are also English labels: a state or status shown untranslated must still be caught.
 */
const withoutApiStrings = (piece: string, answers: unknown[]): string => {
  const labels = new Set(stringsOf(MESSAGES.en));

  return [...new Set(answers.flatMap(stringsOf))]
    .filter((value) => value.length > 0 && !labels.has(value))
    .sort((a, b) => b.length - a.length)
    .reduce((remaining, value) => remaining.split(value).join(" "), piece);
};

const expectNoEnglish = (answers: unknown[]) => {
  const pieces = shownPieces().map((piece) => withoutApiStrings(piece, answers));

  expect(pieces.length).toBeGreaterThan(0);
  for (const label of englishLabels()) {
    const hits = pieces.filter((piece) => piece.includes(label));

    expect(hits, `English label "${label}" shown in Japanese`).toEqual([]);
  }
  const words = pieces.flatMap((piece) => piece.match(LATIN_WORD) ?? []);

  expect(words.filter((word) => !JAPANESE_LATIN_WORDS.has(word))).toEqual([]);
};

const visitAllTabs = async () => {
  for (const tab of screen.getAllByRole("tab")) {
    fireEvent.click(tab);
    await waitFor(() => expect(tab.getAttribute("aria-selected")).toBe("true"));
  }
};

describe("Japanese", () => {
  it("has every English message translated (only the product, DAG and CLI are the same)", () => {
    const en = stringsOf(MESSAGES.en);
    const ja = stringsOf(MESSAGES.ja);

    expect(ja).toHaveLength(en.length);
    const untranslated = en.filter((label, index) => ja[index] === label && !SAME_IN_BOTH.has(label));

    expect(untranslated).toEqual([]);
    expect(Object.keys(MESSAGES.ja.states).sort()).toEqual(Object.keys(MESSAGES.en.states).sort());
  });

  it("the KOMOJU page, every tab, for an editor", async () => {
    const answers = [overview(), tokyoDetails()];

    fakeApi({ "GET overview": answers[0], "GET sites/tokyo": answers[1] });
    renderInHost(<KomojuPage />, { language: "ja" });
    await screen.findByTestId("komoju-settings");
    await visitAllTabs();

    expect(shownPieces()).toContain("処理中 (KOMOJU 確認待ち)"); // the check sees the page
    expectNoEnglish(answers);
  });

  it("the KOMOJU page for a viewer, runs unknown, nothing to show", async () => {
    const answers = [
      { ...viewerOverview(), runs_unknown: true },
      { ...viewerTokyoDetails(), orders: { counts: {}, pending: [], to_settle: [] }, recent_changes: [] },
    ];

    fakeApi({ "GET overview": answers[0], "GET sites/tokyo": answers[1] });
    renderInHost(<KomojuPage />, { language: "ja" });
    await screen.findByTestId("komoju-settings");
    await visitAllTabs();

    expect(screen.getAllByTestId("komoju-read-only")[0]?.textContent).toBe(
      "閲覧のみ: あなたの Airflow ロールでは DAG komoju_refund_process、接続 komoju_default を編集できません。",
    );
    expectNoEnglish(answers);
  });

  it("the KOMOJU page when the API fails without a sentence", async () => {
    fakeApi({ "GET overview": answer(502, "Bad Gateway") });
    renderInHost(<KomojuPage />, { language: "ja" });

    expect((await screen.findByRole("alert")).textContent).toBe("KOMOJU API が説明なしで HTTP 502 を返しました。");
    expectNoEnglish([]);
  });

  it("the run tab of a KOMOJU run, a dry run among its sites", async () => {
    const report = cancelRun();
    const tokyo = report.sites[0] as RunSite;
    const dryRun = { ...tokyo, counts: { ...(tokyo.counts as RunSiteCounts), dry_run: true }, site_id: "kobe" };
    const answers = [{ ...report, sites: [...report.sites, dryRun] }];

    fakeApi({ [`GET runs/komoju_cancel_process/${CANCEL_RUN_ID}`]: answers[0] });
    renderInHost(<RunTab dagId="komoju_cancel_process" runId={CANCEL_RUN_ID} />, { language: "ja" });
    await screen.findAllByTestId("komoju-run-site");
    expectNoEnglish(answers);
  });

  it("the run tab of another DAG", async () => {
    fakeApi({ "GET runs/example/manual__1": { dag_id: "example", job: null, run_id: "manual__1", sites: [] } });
    renderInHost(<RunTab dagId="example" runId="manual__1" />, { language: "ja" });
    await screen.findByTestId("komoju-not-a-komoju-run");
    expectNoEnglish(["example"]);
  });

  it("the dashboard", async () => {
    fakeApi({ "GET dashboard": dashboard() });
    renderInHost(<DashboardWidget />, { language: "ja", path: "/" });
    await screen.findByTestId("komoju-dashboard");
    expectNoEnglish([dashboard()]);
  });

  it("every Airflow state", () => {
    const states = Object.keys(MESSAGES.en.states);

    renderInHost(
      <>
        {states.map((state) => (
          <RunStateBadge key={state} state={state} />
        ))}
        <RunStateBadge state={null} />
      </>,
      { language: "ja" },
    );

    expect(states).toHaveLength(13);
    expectNoEnglish([]);
    expect(document.body.textContent).toContain("ステータスなし");
  });
});
