"""PowerFlow compatibility: `from ipaascommon import ipaas_exceptions`."""

from ipaascommon import ipaas_exceptions, json_utils

__all__ = ["ipaas_exceptions", "json_utils"]
