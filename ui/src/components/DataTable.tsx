import { Table } from "@chakra-ui/react";
import type { ReactNode } from "react";

/**
 * The look every table of the KOMOJU view shares: small, bordered, scrolling sideways when narrow, its header row
 * muted. `header` holds the column headers, the children the body's rows; `testId` names the table for the tests.
 */
export const DataTable = ({
  children,
  header,
  mt,
  testId,
}: {
  readonly children: ReactNode;
  readonly header: ReactNode;
  readonly mt?: number;
  readonly testId: string;
}) => (
  <Table.ScrollArea borderColor="border" borderRadius="md" borderWidth="1px" mt={mt}>
    <Table.Root data-testid={testId} size="sm">
      <Table.Header>
        <Table.Row bg="bg.muted">{header}</Table.Row>
      </Table.Header>
      <Table.Body>{children}</Table.Body>
    </Table.Root>
  </Table.ScrollArea>
);
