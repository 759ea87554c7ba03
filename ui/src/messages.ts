/** The plugin's own words in the languages the KOMOJU jobs speak; anything else falls back to English. */
const EN = {
  title: "KOMOJU",
  subtitle: "React plugin skeleton: the host's theme, language and login reach this page.",
  language: "Language",
  colorMode: "Color mode",
  api: "Plugin API",
  apiLoading: "calling…",
  apiOk: "signed in: the API answered",
  apiError: "the API refused",
  runTitle: "KOMOJU run",
  notKomojuDag: "This tab is for the KOMOJU cancel and refund DAGs; this run belongs to another DAG.",
};

export type Messages = typeof EN;

const JA: Messages = {
  title: "KOMOJU",
  subtitle: "React プラグインの骨組み: Airflow のテーマ・言語・ログインがこのページに届いています。",
  language: "言語",
  colorMode: "カラーモード",
  api: "プラグイン API",
  apiLoading: "呼び出し中…",
  apiOk: "ログイン済み: API が応答しました",
  apiError: "API が拒否しました",
  runTitle: "KOMOJU 実行",
  notKomojuDag: "このタブは KOMOJU のキャンセル・返金 DAG 用です。この実行は別の DAG のものです。",
};

export const messagesFor = (language: string): Messages =>
  language.toLowerCase().startsWith("ja") ? JA : EN;

/** The language's own name for itself ("日本語", "English"), or the tag when the browser cannot name it. */
export const languageName = (language: string): string => {
  try {
    return new Intl.DisplayNames([language], { type: "language" }).of(language) ?? language;
  } catch {
    return language;
  }
};
