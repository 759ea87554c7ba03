import { Code, Table } from "@chakra-ui/react";

import type { Change } from "../api";
import { DataTable } from "../components/DataTable";
import { Muted } from "../components/Notes";
import { type Locale, useLocale } from "../locale";

/** A recorded value in the user's language: on/off, a language's name, a list, or the value as it is. */
export const formatValue = (locale: Locale, field: string | null, value: unknown): string => {
  const { text } = locale;

  if (value === null || value === undefined) {
    return "—";
  }
  if (typeof value === "boolean") {
    return value ? text.on : text.off;
  }
  if (field === "email_locale" && typeof value === "string") {
    return text.locales[value] ?? value;
  }
  if (Array.isArray(value)) {
    return value.length === 0 ? text.empty : value.map(String).join(", ");
  }
  if (value === "") {
    return text.empty;
  }

  return typeof value === "object" ? JSON.stringify(value) : String(value);
};

/** Who changed what, when, and through which door (this page or the CLI), newest first as the API sends them. */
export const RecentChanges = ({ changes }: { readonly changes: readonly Change[] }) => {
  const locale = useLocale();
  const { dateTime, text } = locale;

  if (changes.length === 0) {
    return <Muted>{text.noChanges}</Muted>;
  }

  return (
    <DataTable
      header={
        <>
          <Table.ColumnHeader>{text.when}</Table.ColumnHeader>
          <Table.ColumnHeader>{text.who}</Table.ColumnHeader>
          <Table.ColumnHeader>{text.through}</Table.ColumnHeader>
          <Table.ColumnHeader>{text.what}</Table.ColumnHeader>
          <Table.ColumnHeader>{text.subject}</Table.ColumnHeader>
          <Table.ColumnHeader>{text.beforeAfter}</Table.ColumnHeader>
        </>
      }
      mt={2}
      testId="komoju-changes"
    >
      {changes.map((change, index) => (
        // The API gives no id; a change is only ever appended, so its place is stable within one answer.
        <Table.Row key={`${change.changed_at} ${index}`}>
          <Table.Cell whiteSpace="nowrap">{dateTime(change.changed_at)}</Table.Cell>
          <Table.Cell>{change.changed_by}</Table.Cell>
          <Table.Cell>{text.channels[change.channel] ?? change.channel}</Table.Cell>
          <Table.Cell>
            {text.actions[change.action] ?? change.action}
            {change.field ? ` · ${text.fields[change.field] ?? change.field}` : null}
          </Table.Cell>
          <Table.Cell>{change.subject ? <Code>{change.subject}</Code> : null}</Table.Cell>
          <Table.Cell>
            {formatValue(locale, change.field, change.old_value)} →{" "}
            {formatValue(locale, change.field, change.new_value)}
          </Table.Cell>
        </Table.Row>
      ))}
    </DataTable>
  );
};
