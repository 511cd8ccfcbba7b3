"""The closed PKI both sides check against: the certificate profile (`profile`),
whether a certificate may be used now (`checks`), identity files (`identity`),
passphrase-sealed files (`sealed`), certificate requests (`csr`) and the bundle
the operator hands back (`bundle`). The public names are exported once, by
`broker`.

Issuing certificates is the escrow's (`escrow_worker.ca`), never this package's.
"""
