SELECT document FROM komoju.site_payment_methods_document WHERE site_id = %(site_id)s
