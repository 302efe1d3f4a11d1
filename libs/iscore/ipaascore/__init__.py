"""PowerFlow compatibility: `from ipaascore.BaseStep import BaseStep` keeps working."""
