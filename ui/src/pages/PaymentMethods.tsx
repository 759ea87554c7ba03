import { Badge, Code, HStack, IconButton, Stack, Switch, Table } from "@chakra-ui/react";
import { useState } from "react";

import { moveMethod, type PaymentMethod, type SiteDetails, toggleMethod } from "../api";
import { DataTable } from "../components/DataTable";
import { ErrorNote, Muted, ReadOnlyNote } from "../components/Notes";
import { useLocale } from "../locale";

const methodKey = (method: PaymentMethod): string => `${method.type_slug} ${method.currency}`;

/**
 * The site's payment methods in the order customers see them: a switch shows whether each is shown (its
 * state, not an action), arrows move it. Every change goes to the server, then the page reloads.
 */
export const PaymentMethods = ({
  siteId,
  paymentMethods,
  onChanged,
}: {
  readonly siteId: string;
  readonly paymentMethods: SiteDetails["payment_methods"];
  readonly onChanged: () => void;
}) => {
  const { language, text } = useLocale();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);

  if (paymentMethods === null) {
    return <Muted>{text.paymentMethodsHidden}</Muted>;
  }
  const readOnly = !paymentMethods.can_edit;
  const methods = [...paymentMethods.methods].sort((a, b) => a.position - b.position);

  const change = async (request: () => Promise<unknown>) => {
    setBusy(true);
    setError(null);
    try {
      await request();
      onChanged();
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  };

  const nameOf = (method: PaymentMethod): string =>
    (language === "ja" ? method.name_ja ?? method.name_en : method.name_en ?? method.name_ja) ?? method.type_slug;

  return (
    <Stack gap={3} pt={2}>
      {readOnly ? <ReadOnlyNote missing={paymentMethods.edit_missing} /> : null}
      {error ? <ErrorNote error={error} /> : null}
      {methods.length === 0 ? (
        <Muted>{text.noPaymentMethods}</Muted>
      ) : (
        <DataTable
          header={
            <>
              <Table.ColumnHeader textAlign="end">{text.position}</Table.ColumnHeader>
              <Table.ColumnHeader>{text.paymentType}</Table.ColumnHeader>
              <Table.ColumnHeader>{text.currency}</Table.ColumnHeader>
              <Table.ColumnHeader>{text.methodName}</Table.ColumnHeader>
              <Table.ColumnHeader>{text.subtypes}</Table.ColumnHeader>
              <Table.ColumnHeader>{text.available}</Table.ColumnHeader>
              <Table.ColumnHeader>{text.shown}</Table.ColumnHeader>
              <Table.ColumnHeader>{text.order}</Table.ColumnHeader>
            </>
          }
          testId="komoju-payment-methods"
        >
          {methods.map((method, index) => (
            <Table.Row data-method={methodKey(method)} key={methodKey(method)}>
              <Table.Cell textAlign="end">{method.position}</Table.Cell>
              <Table.Cell>
                <Code>{method.type_slug}</Code>
              </Table.Cell>
              <Table.Cell>{method.currency}</Table.Cell>
              <Table.Cell>{nameOf(method)}</Table.Cell>
              <Table.Cell color="fg.muted" fontSize="xs">
                {method.subtypes.join(", ")}
              </Table.Cell>
              <Table.Cell>
                <Badge colorPalette={method.available ? "green" : "gray"} variant="subtle">
                  {method.available ? text.yes : text.no}
                </Badge>
              </Table.Cell>
              <Table.Cell>
                <Switch.Root
                  checked={method.enabled}
                  disabled={readOnly || busy}
                  onCheckedChange={(details) =>
                    void change(() => toggleMethod(siteId, method, details.checked))
                  }
                  size="sm"
                >
                  <Switch.HiddenInput aria-label={`${text.shown}: ${methodKey(method)}`} />
                  <Switch.Control />
                </Switch.Root>
              </Table.Cell>
              <Table.Cell>
                <HStack gap={1}>
                  <IconButton
                    aria-label={`${text.moveUp}: ${methodKey(method)}`}
                    disabled={readOnly || busy || index === 0}
                    onClick={() => void change(() => moveMethod(siteId, method, method.position - 1))}
                    size="2xs"
                    variant="outline"
                  >
                    ↑
                  </IconButton>
                  <IconButton
                    aria-label={`${text.moveDown}: ${methodKey(method)}`}
                    disabled={readOnly || busy || index === methods.length - 1}
                    onClick={() => void change(() => moveMethod(siteId, method, method.position + 1))}
                    size="2xs"
                    variant="outline"
                  >
                    ↓
                  </IconButton>
                </HStack>
              </Table.Cell>
            </Table.Row>
          ))}
        </DataTable>
      )}
    </Stack>
  );
};
