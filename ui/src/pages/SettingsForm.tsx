import { Button, Code, Field, HStack, Input, NativeSelect, Stack, Switch, Text, Textarea } from "@chakra-ui/react";
import { type FormEvent, useState } from "react";

import { ApiError, type Site, type SiteUpdate, updateSite } from "../api";
import { ErrorNote, ReadOnlyNote } from "../components/Notes";
import { useLocale } from "../locale";

type Draft = {
  name: string;
  contacts: string;
  email_locale: "ja" | "en";
  email_enabled: boolean;
  active: boolean;
};

const FORM_FIELDS = new Set(["name", "notify_emails", "email_locale", "email_enabled", "active"]);

const draftOf = (site: Site): Draft => ({
  active: site.active,
  contacts: site.notify_emails.join("\n"),
  email_enabled: site.email_enabled,
  email_locale: site.email_locale,
  name: site.name ?? "",
});

/** One e-mail address per line; blank lines and surrounding spaces do not count. */
export const parseContacts = (contacts: string): string[] =>
  contacts
    .split(/\r?\n/u)
    .map((line) => line.trim())
    .filter((line) => line !== "");

/** Only what the user changed, so the server records exactly those changes. */
export const changedFields = (site: Site, draft: Draft): SiteUpdate => {
  const update: SiteUpdate = {};
  const name = draft.name.trim();
  const emails = parseContacts(draft.contacts);

  if (name !== (site.name ?? "")) {
    update.name = name;
  }
  if (emails.join("\n") !== site.notify_emails.join("\n")) {
    update.notify_emails = emails;
  }
  if (draft.email_locale !== site.email_locale) {
    update.email_locale = draft.email_locale;
  }
  if (draft.email_enabled !== site.email_enabled) {
    update.email_enabled = draft.email_enabled;
  }
  if (draft.active !== site.active) {
    update.active = draft.active;
  }

  return update;
};

type Outcome = { kind: "saved"; count: number } | { kind: "error"; error: unknown; field: string | null };

/** The site's settings. The server decides who may change them; the form only mirrors its answer. */
export const SettingsForm = ({ site, onChanged }: { readonly site: Site; readonly onChanged: () => void }) => {
  const { text } = useLocale();
  const [draft, setDraft] = useState<Draft>(() => draftOf(site));
  // When the server's values change (the reload after a save), the form starts again from them; the
  // outcome of the save stays on screen.
  const serverValues = JSON.stringify(draftOf(site));
  const [shownValues, setShownValues] = useState(serverValues);

  if (shownValues !== serverValues) {
    setShownValues(serverValues);
    setDraft(draftOf(site));
  }
  const [saving, setSaving] = useState(false);
  const [outcome, setOutcome] = useState<Outcome | null>(null);
  const update = changedFields(site, draft);
  const dirty = Object.keys(update).length > 0;
  const readOnly = !site.can_edit;
  const fieldError = (field: string) =>
    outcome?.kind === "error" && outcome.field === field && outcome.error instanceof ApiError
      ? outcome.error.detail ?? text.httpError(outcome.error.status)
      : undefined;
  const edit = (patch: Partial<Draft>) => setDraft((previous) => ({ ...previous, ...patch }));

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    if (!dirty || readOnly) {
      return;
    }
    setSaving(true);
    setOutcome(null);
    try {
      const answer = await updateSite(site.site_id, update);

      setOutcome({ count: answer.changes.length, kind: "saved" });
      onChanged();
    } catch (error) {
      const field =
        error instanceof ApiError && error.field !== null && FORM_FIELDS.has(error.field) ? error.field : null;

      setOutcome({ error, field, kind: "error" });
    } finally {
      setSaving(false);
    }
  };

  const nameError = fieldError("name");
  const contactsError = fieldError("notify_emails");
  const localeError = fieldError("email_locale");
  const emailEnabledError = fieldError("email_enabled");
  const activeError = fieldError("active");

  return (
    <form data-testid="komoju-settings" noValidate onSubmit={(event) => void submit(event)}>
      <Stack gap={4} maxW="36rem" pt={2}>
        {readOnly ? <ReadOnlyNote missing={site.edit_missing} /> : null}
        <Text color="fg.muted" fontSize="sm">
          {text.connection} <Code>{site.komoju_conn_id}</Code>
        </Text>
        <Field.Root disabled={readOnly} invalid={nameError !== undefined}>
          <Field.Label>{text.name}</Field.Label>
          <Input name="name" onChange={(event) => edit({ name: event.target.value })} value={draft.name} />
          <Field.ErrorText>{nameError}</Field.ErrorText>
        </Field.Root>
        <Field.Root disabled={readOnly} invalid={contactsError !== undefined}>
          <Field.Label>{text.contacts}</Field.Label>
          <Textarea
            autoresize
            name="notify_emails"
            onChange={(event) => edit({ contacts: event.target.value })}
            rows={3}
            value={draft.contacts}
          />
          <Field.HelperText>{text.contactsHelp}</Field.HelperText>
          <Field.ErrorText>{contactsError}</Field.ErrorText>
        </Field.Root>
        <Field.Root disabled={readOnly} invalid={localeError !== undefined}>
          <Field.Label>{text.emailLocale}</Field.Label>
          <NativeSelect.Root disabled={readOnly} maxW="16rem">
            <NativeSelect.Field
              name="email_locale"
              onChange={(event) => edit({ email_locale: event.target.value === "ja" ? "ja" : "en" })}
              value={draft.email_locale}
            >
              <option value="ja">{text.locales.ja}</option>
              <option value="en">{text.locales.en}</option>
            </NativeSelect.Field>
            <NativeSelect.Indicator />
          </NativeSelect.Root>
          <Field.ErrorText>{localeError}</Field.ErrorText>
        </Field.Root>
        <Field.Root disabled={readOnly} invalid={emailEnabledError !== undefined}>
          <Switch.Root
            checked={draft.email_enabled}
            disabled={readOnly}
            name="email_enabled"
            onCheckedChange={(details) => edit({ email_enabled: details.checked })}
          >
            <Switch.HiddenInput />
            <Switch.Control />
            <Switch.Label>{text.emailEnabled}</Switch.Label>
          </Switch.Root>
          <Field.ErrorText>{emailEnabledError}</Field.ErrorText>
        </Field.Root>
        <Field.Root disabled={readOnly} invalid={activeError !== undefined}>
          <Switch.Root
            checked={draft.active}
            disabled={readOnly}
            name="active"
            onCheckedChange={(details) => edit({ active: details.checked })}
          >
            <Switch.HiddenInput />
            <Switch.Control />
            <Switch.Label>{text.active}</Switch.Label>
          </Switch.Root>
          <Field.ErrorText>{activeError}</Field.ErrorText>
        </Field.Root>
        {outcome?.kind === "error" && outcome.field === null ? <ErrorNote error={outcome.error} /> : null}
        <HStack gap={3}>
          <Button disabled={readOnly || !dirty} loading={saving} loadingText={text.saving} type="submit">
            {text.save}
          </Button>
          {outcome?.kind === "saved" ? (
            <Text color="fg.success" fontSize="sm" role="status">
              {outcome.count > 0 ? text.saved(outcome.count) : text.nothingChanged}
            </Text>
          ) : null}
        </HStack>
      </Stack>
    </form>
  );
};
