import { Table } from "@chakra-ui/react";

import type { OrderJob, StatusCounts } from "../api";
import { useLocale } from "../locale";
import { DataTable } from "./DataTable";
import { OrderStatusBadge } from "./StateBadge";

const STATUS_ORDER = ["to_do", "Cancelled", "Refunded", "Pending", "Rejected", "Failed", "no_payment_id"];
const JOBS: readonly OrderJob[] = ["cancel", "refund"];

/**
 * Orders per status (rows) and job (columns): narrow enough for a card. A status a job does not have (a cancel
 * is never "Refunded") shows "—"; a status this view does not know is shown as the API names it, last.
 */
export const OrderCounts = ({ counts }: { readonly counts: Partial<Record<OrderJob, StatusCounts>> }) => {
  const { count, text } = useLocale();
  const jobs = JOBS.filter((job) => counts[job] !== undefined);
  const present = new Set(jobs.flatMap((job) => Object.keys(counts[job] ?? {})));
  const statuses = [
    ...STATUS_ORDER.filter((status) => present.has(status)),
    ...[...present].filter((status) => !STATUS_ORDER.includes(status)).sort(),
  ];

  return (
    <DataTable
      header={
        <>
          <Table.ColumnHeader>{text.status}</Table.ColumnHeader>
          {jobs.map((job) => (
            <Table.ColumnHeader data-job={job} key={job} textAlign="end" whiteSpace="nowrap">
              {text.jobs[job]}
            </Table.ColumnHeader>
          ))}
        </>
      }
      testId="komoju-order-counts"
    >
      {statuses.map((status) => (
        <Table.Row data-status={status} key={status}>
          <Table.Cell>
            <OrderStatusBadge status={status} />
          </Table.Cell>
          {jobs.map((job) => {
            const value = counts[job]?.[status];

            return (
              <Table.Cell
                color={value ? undefined : "fg.muted"}
                data-job={job}
                key={job}
                textAlign="end"
                whiteSpace="nowrap"
              >
                {value === undefined ? "—" : count(value)}
              </Table.Cell>
            );
          })}
        </Table.Row>
      ))}
    </DataTable>
  );
};
