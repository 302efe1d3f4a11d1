"""PowerFlow compatibility: `from ipaascommon import ipaas_exceptions`."""
