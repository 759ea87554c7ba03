import { Alert, HStack, Spinner, Text } from "@chakra-ui/react";

import { ApiError, type EditMissing } from "../api";
import { useLocale } from "../locale";

/** Why the user sees a control disabled: the DAGs and connections their Airflow role cannot edit. */
export const ReadOnlyNote = ({ missing }: { readonly missing: readonly EditMissing[] }) => {
  const { text } = useLocale();
  const names = missing.map(({ kind, name }) => `${text.kinds[kind] ?? kind} ${name}`).join(text.listSeparator);

  return (
    <Alert.Root data-testid="komoju-read-only" role="note" size="sm" status="info" variant="subtle">
      <Alert.Indicator />
      <Alert.Description>{names ? text.readOnly(names) : text.readOnlyNothingNamed}</Alert.Description>
    </Alert.Root>
  );
};

/** The server's sentence when it sent one, else what we know (HTTP status, or no answer at all). */
export const useErrorMessage = (): ((error: unknown) => string) => {
  const { text } = useLocale();

  return (error) => {
    if (error instanceof ApiError) {
      return error.detail ?? text.httpError(error.status);
    }

    return text.networkError;
  };
};

export const ErrorNote = ({ error }: { readonly error: unknown }) => {
  const message = useErrorMessage();

  return (
    <Alert.Root role="alert" size="sm" status="error" variant="subtle">
      <Alert.Indicator />
      <Alert.Description>{message(error)}</Alert.Description>
    </Alert.Root>
  );
};

export const Loading = () => {
  const { text } = useLocale();

  return (
    <HStack color="fg.muted" gap={2}>
      <Spinner size="sm" />
      <Text>{text.loading}</Text>
    </HStack>
  );
};

export const Muted = ({ children }: { readonly children: string }) => (
  <Text color="fg.muted" fontSize="sm">
    {children}
  </Text>
);
