-- 0002: each site's payment methods as one JSON document, as the SFCC cartridge kept them in the site
-- custom attribute "Available KOMOJU Payment Methods", for storefronts that read them that way.
-- Only methods KOMOJU still offers and the merchant has on, in the merchant's order.

CREATE VIEW komoju.site_payment_methods_document AS
SELECT s.site_id,
       coalesce(
           jsonb_agg(
               jsonb_build_object(
                   'type_slug', pm.type_slug,
                   'currency', pm.currency,
                   'name_en', pm.name_en,
                   'name_ja', pm.name_ja,
                   'name_ko', pm.name_ko,
                   'subtypes', to_jsonb(pm.subtypes),
                   'position', pm.position
               ) ORDER BY pm.position, pm.type_slug, pm.currency
           ) FILTER (WHERE pm.site_id IS NOT NULL),
           '[]'::jsonb
       ) AS document
FROM komoju.site AS s
LEFT JOIN komoju.payment_method AS pm
       ON pm.site_id = s.site_id AND pm.enabled AND pm.available
GROUP BY s.site_id;

COMMENT ON VIEW komoju.site_payment_methods_document IS
    'Per site, the payment methods to offer (available at KOMOJU and enabled by the merchant) as one JSON array.';
