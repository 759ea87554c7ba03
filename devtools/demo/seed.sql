-- Demo data for `make demo` / `make up`: three sites and their orders. Matches emulator/scenarios/demo.json
-- (payment ids, amounts, statuses). Loaded into a fresh database by devtools/demo.py.

INSERT INTO komoju.site (site_id, name, komoju_conn_id, notify_emails, email_locale, email_enabled, active) VALUES
    ('tokyo',  '東京ストア',   'komoju_default', '{ops-tokyo@example.com}',                    'ja', true,  true),
    ('osaka',  '大阪ストア',   'komoju_default', '{ops-osaka@example.com}',                    'ja', false, true),
    ('global', 'Global Store', 'komoju_global',  '{ops@example.com,finance@example.com}',      'en', true,  true),
    ('closed', 'Closed Store', 'komoju_default', '{}',                                         'ja', true,  false);

INSERT INTO komoju.orders (site_id, order_no, status, payment_status, payment_method, komoju_payment_id,
                           total_gross_price, currency, komoju_cancel_status, komoju_refund_status,
                           komoju_refund_response) VALUES
    ('tokyo', 'T-C01', 'cancelled', 'not_paid', 'KOMOJU_HOSTED_PAGE', 'demotc0100000000000000000', 1200, 'JPY', NULL, NULL, NULL),
    ('tokyo', 'T-C02', 'cancelled', 'not_paid', 'KOMOJU_HOSTED_PAGE', 'demotc0200000000000000000', 3980, 'JPY', NULL, NULL, NULL),
    ('tokyo', 'T-C03', 'cancelled', 'not_paid', 'KOMOJU_HOSTED_PAGE', 'demotc0300000000000000000', 2500, 'JPY', NULL, NULL, NULL),
    ('tokyo', 'T-C04', 'cancelled', 'not_paid', 'KOMOJU_HOSTED_PAGE', 'demotc0400000000000000000', 5400, 'JPY', NULL, NULL, NULL),
    ('tokyo', 'T-C05', 'cancelled', 'not_paid', 'KOMOJU_HOSTED_PAGE', 'demotc0500000000000000000', 800, 'JPY', NULL, NULL, NULL),
    ('tokyo', 'T-C06', 'cancelled', 'not_paid', 'KOMOJU_HOSTED_PAGE', 'demotc0600000000000000000', 1500, 'JPY', NULL, NULL, NULL),
    ('tokyo', 'T-C07', 'cancelled', 'not_paid', 'KOMOJU_HOSTED_PAGE', 'demotc0700000000000000000', 2200, 'JPY', NULL, NULL, NULL),
    ('tokyo', 'T-R01', 'cancelled', 'paid', 'KOMOJU_HOSTED_PAGE', 'demotr0100000000000000000', 9800, 'JPY', NULL, NULL, NULL),
    ('tokyo', 'T-R02', 'cancelled', 'paid', 'KOMOJU_HOSTED_PAGE', 'demotr0200000000000000000', 15000, 'JPY', NULL, NULL, NULL),
    ('tokyo', 'T-R03', 'cancelled', 'paid', 'KOMOJU_HOSTED_PAGE', 'demotr0300000000000000000', 3000, 'JPY', NULL, NULL, NULL),
    ('tokyo', 'T-R04', 'cancelled', 'paid', 'KOMOJU_HOSTED_PAGE', 'demotr0400000000000000000', 4000, 'JPY', NULL, NULL, NULL),
    ('tokyo', 'T-R05', 'cancelled', 'paid', 'KOMOJU_HOSTED_PAGE', 'demotr0500000000000000000', 10000, 'JPY', NULL, NULL, NULL),
    ('tokyo', 'T-R06', 'cancelled', 'paid', 'KOMOJU_HOSTED_PAGE', 'demotr0600000000000000000', 6600, 'JPY', NULL, NULL, NULL),
    ('tokyo', 'T-R07', 'cancelled', 'paid', 'KOMOJU_HOSTED_PAGE', 'demotr0700000000000000000', 7700, 'XXX', NULL, NULL, NULL),
    ('tokyo', 'T-N01', 'open', 'paid', 'KOMOJU_HOSTED_PAGE', 'demotn0100000000000000000', 1000, 'JPY', NULL, NULL, NULL),
    ('tokyo', 'T-N02', 'cancelled', 'not_paid', 'KOMOJU_HOSTED_PAGE', NULL, 1000, 'JPY', NULL, NULL, NULL),
    ('tokyo', 'T-N03', 'cancelled', 'paid', 'CREDIT_CARD_OTHER_PSP', 'demotn0300000000000000000', 1000, 'JPY', NULL, NULL, NULL),
    ('osaka', 'O-C01', 'cancelled', 'not_paid', 'KOMOJU_HOSTED_PAGE', 'demooc0100000000000000000', 1800, 'JPY', NULL, NULL, NULL),
    ('osaka', 'O-C02', 'cancelled', 'not_paid', 'KOMOJU_HOSTED_PAGE', 'demooc0200000000000000000', 2600, 'JPY', NULL, NULL, NULL),
    ('osaka', 'O-R01', 'cancelled', 'paid', 'KOMOJU_HOSTED_PAGE', 'demoor0100000000000000000', 12000, 'JPY', NULL, NULL, NULL),
    ('osaka', 'O-R02', 'cancelled', 'paid', 'KOMOJU_HOSTED_PAGE', 'demoor0200000000000000000', 4300, 'JPY', NULL, NULL, NULL),
    ('osaka', 'O-R03', 'cancelled', 'paid', 'KOMOJU_HOSTED_PAGE', 'demoor0300000000000000000', 5200, 'JPY', NULL, 'Refunded', NULL),
    ('global', 'G-C01', 'cancelled', 'not_paid', 'KOMOJU_HOSTED_PAGE', 'demogc0100000000000000000', 25.0, 'USD', NULL, NULL, NULL),
    ('global', 'G-C02', 'cancelled', 'not_paid', 'KOMOJU_HOSTED_PAGE', 'demogc0200000000000000000', 45.0, 'EUR', NULL, NULL, NULL),
    ('global', 'G-C03', 'cancelled', 'not_paid', 'KOMOJU_HOSTED_PAGE', 'demogc0300000000000000000', 19.99, 'USD', NULL, NULL, NULL),
    ('global', 'G-R01', 'cancelled', 'paid', 'KOMOJU_HOSTED_PAGE', 'demogr0100000000000000000', 49.9, 'USD', NULL, NULL, NULL),
    ('global', 'G-R02', 'cancelled', 'paid', 'KOMOJU_HOSTED_PAGE', 'demogr0200000000000000000', 12.5, 'USD', NULL, NULL, NULL),
    ('global', 'G-R03', 'cancelled', 'paid', 'KOMOJU_HOSTED_PAGE', 'demogr0300000000000000000', 99.0, 'EUR', NULL, NULL, NULL),
    ('global', 'G-R04', 'cancelled', 'paid', 'KOMOJU_HOSTED_PAGE', 'demogr0400000000000000000', -30.0, 'USD', NULL, NULL, NULL),
    ('global', 'G-R05', 'cancelled', 'paid', 'KOMOJU_HOSTED_PAGE', 'demogr0500000000000000000', 75.25, 'USD', NULL, 'Failed', 'HTTP 503 service_unavailable: maintenance');
