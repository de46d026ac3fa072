"""Data sets, patient-level splits and the built-in synthetic set."""
