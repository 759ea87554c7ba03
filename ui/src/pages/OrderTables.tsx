import { Link, Table } from "@chakra-ui/react";

import type { OrderToSettle, PendingOrder } from "../api";
import { DataTable } from "../components/DataTable";
import { Muted } from "../components/Notes";
import { OrderStatusBadge } from "../components/StateBadge";
import { useLocale } from "../locale";

/** Orders KOMOJU would not cancel or refund: someone has to settle them by hand. KOMOJU's reason as it came. */
export const OrdersToSettle = ({ orders }: { readonly orders: readonly OrderToSettle[] }) => {
  const { dateTime, text } = useLocale();

  if (orders.length === 0) {
    return <Muted>{text.noneToSettle}</Muted>;
  }

  return (
    <DataTable
      header={
        <>
          <Table.ColumnHeader>{text.job}</Table.ColumnHeader>
          <Table.ColumnHeader>{text.orderNo}</Table.ColumnHeader>
          <Table.ColumnHeader>{text.status}</Table.ColumnHeader>
          <Table.ColumnHeader textAlign="end">{text.amount}</Table.ColumnHeader>
          <Table.ColumnHeader>{text.komojuReason}</Table.ColumnHeader>
          <Table.ColumnHeader>{text.recordedAt}</Table.ColumnHeader>
          <Table.ColumnHeader>{text.emailedAt}</Table.ColumnHeader>
        </>
      }
      mt={2}
      testId="komoju-to-settle-table"
    >
      {orders.map((order) => (
        <Table.Row data-order-no={order.order_no} key={`${order.job} ${order.order_no}`}>
          <Table.Cell whiteSpace="nowrap">{text.jobShort[order.job] ?? order.job}</Table.Cell>
          <Table.Cell fontFamily="mono">{order.order_no}</Table.Cell>
          <Table.Cell>
            <OrderStatusBadge status={order.status} />
          </Table.Cell>
          <Table.Cell textAlign="end" whiteSpace="nowrap">
            {order.amount_text}
          </Table.Cell>
          <Table.Cell minW="16rem">{order.reason}</Table.Cell>
          <Table.Cell whiteSpace="nowrap">{dateTime(order.recorded_at)}</Table.Cell>
          <Table.Cell color={order.emailed_at ? undefined : "fg.muted"} whiteSpace="nowrap">
            {order.emailed_at ? dateTime(order.emailed_at) : text.notEmailed}
          </Table.Cell>
        </Table.Row>
      ))}
    </DataTable>
  );
};

/** Orders KOMOJU accepted but has not completed yet (e.g. a bank transfer refund waiting for the customer). */
export const PendingOrders = ({ orders }: { readonly orders: readonly PendingOrder[] }) => {
  const { dateTime, text } = useLocale();

  if (orders.length === 0) {
    return <Muted>{text.nonePending}</Muted>;
  }

  return (
    <DataTable
      header={
        <>
          <Table.ColumnHeader>{text.job}</Table.ColumnHeader>
          <Table.ColumnHeader>{text.orderNo}</Table.ColumnHeader>
          <Table.ColumnHeader textAlign="end">{text.amount}</Table.ColumnHeader>
          <Table.ColumnHeader>{text.since}</Table.ColumnHeader>
          <Table.ColumnHeader>{text.komojuResponse}</Table.ColumnHeader>
          <Table.ColumnHeader>{text.customerPage}</Table.ColumnHeader>
        </>
      }
      mt={2}
      testId="komoju-pending-table"
    >
      {orders.map((order) => (
        <Table.Row data-order-no={order.order_no} key={`${order.job} ${order.order_no}`}>
          <Table.Cell whiteSpace="nowrap">{text.jobShort[order.job] ?? order.job}</Table.Cell>
          <Table.Cell fontFamily="mono">{order.order_no}</Table.Cell>
          <Table.Cell textAlign="end" whiteSpace="nowrap">
            {order.amount_text}
          </Table.Cell>
          <Table.Cell whiteSpace="nowrap">{dateTime(order.since)}</Table.Cell>
          <Table.Cell minW="16rem">{order.response}</Table.Cell>
          <Table.Cell>
            {order.customer_link ? (
              <Link color="fg.info" href={order.customer_link} rel="noopener noreferrer" target="_blank">
                {text.openCustomerPage}
              </Link>
            ) : (
              <Muted>—</Muted>
            )}
          </Table.Cell>
        </Table.Row>
      ))}
    </DataTable>
  );
};
