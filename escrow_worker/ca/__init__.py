"""The escrow operator's closed PKI: the issuing certificate authority and the
escrow's own keys (`authority`), the directory of registered parties, their
certificates and the CRL (`directory`), the trust policy of who may send to
whom (`policy`), and the operator's actions on them (`operator`: init,
register, sign a CSR, revoke, publish the CRL).

Checking a certificate is `broker.pki`'s, the same code the client runs.
"""
