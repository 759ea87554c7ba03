-- Sync one site's payment methods with what KOMOJU returned, in one statement (one transaction):
--   new (type_slug, currency)      -> inserted, enabled, placed after the existing ones in KOMOJU's order;
--   known ones                     -> names, subtypes, details refreshed, available; enabled and position kept;
--   known ones KOMOJU left out     -> available = false; enabled and position kept.
-- %(methods)s is a JSON array of {type_slug, currency, name_en, name_ja, name_ko, subtypes, details}.
WITH incoming AS (
    SELECT item ->> 'type_slug' AS type_slug,
           item ->> 'currency'  AS currency,
           item ->> 'name_en'   AS name_en,
           item ->> 'name_ja'   AS name_ja,
           item ->> 'name_ko'   AS name_ko,
           ARRAY(SELECT jsonb_array_elements_text(coalesce(item -> 'subtypes', '[]'::jsonb))) AS subtypes,
           coalesce(item -> 'details', '{}'::jsonb) AS details,
           ord
    FROM jsonb_array_elements(%(methods)s::jsonb) WITH ORDINALITY AS t (item, ord)
),
vanished AS (
    UPDATE komoju.payment_method AS pm
    SET available = false, synced_at = now()
    WHERE pm.site_id = %(site_id)s
      AND NOT EXISTS (SELECT 1 FROM incoming AS i WHERE i.type_slug = pm.type_slug AND i.currency = pm.currency)
    RETURNING pm.type_slug
),
upserted AS (
    INSERT INTO komoju.payment_method AS pm
        (site_id, type_slug, currency, name_en, name_ja, name_ko, subtypes, details, enabled, available, position,
         synced_at)
    SELECT %(site_id)s, i.type_slug, i.currency, i.name_en, i.name_ja, i.name_ko, i.subtypes, i.details, true, true,
           (SELECT coalesce(max(position), 0) FROM komoju.payment_method WHERE site_id = %(site_id)s)
               + row_number() OVER (PARTITION BY known.type_slug IS NULL ORDER BY i.ord),  -- used for new rows only
           now()
    FROM incoming AS i
    LEFT JOIN komoju.payment_method AS known
           ON known.site_id = %(site_id)s AND known.type_slug = i.type_slug AND known.currency = i.currency
    ON CONFLICT (site_id, type_slug, currency) DO UPDATE
    SET name_en = excluded.name_en,
        name_ja = excluded.name_ja,
        name_ko = excluded.name_ko,
        subtypes = excluded.subtypes,
        details = excluded.details,
        available = true,
        synced_at = excluded.synced_at
    RETURNING (xmax = 0) AS inserted
)
SELECT (SELECT count(*) FROM upserted WHERE inserted)     AS added,
       (SELECT count(*) FROM upserted WHERE NOT inserted) AS refreshed,
       (SELECT count(*) FROM vanished)                    AS vanished
