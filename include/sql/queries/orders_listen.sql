-- The asset watchers of the cancel and refund DAGs (komoju.events) listen for orders becoming eligible: migration
-- 0007's trigger notifies this channel with {"site_id": ..., "job": "cancel" | "refund"}. Integrators whose own tables
-- replace komoju.orders (KOMOJU_SQL_DIR) notify the same channel from their own trigger (README).
LISTEN komoju_orders
