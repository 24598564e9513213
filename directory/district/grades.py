"""Grade levels (CEDS / OneRoster codes) the SIS sync accepts, and the grades that get
an account by default (config.yaml sync.auto_provision)."""

DEFAULT_GRADES = ["01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12"]
GRADES = {"IT", "PR", "PK", "TK", "KG", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10",
          "11", "12", "13", "PS", "UG", "OTHER"}
