"""The loan book's column names, as plain lists: importable where pandas is not (the asset
modules, which say which columns each step loads). The contract itself is in ``schemas``."""

INT_COLUMNS = [
    "Age",
    "Monthly_Income",
    "Num_Dependents",
    "Loan_Amount",
    "Loan_Tenure",
    "Num_Missed_Payments",
    "Days_Past_Due",
    "Collection_Attempts",
]
FLOAT_COLUMNS = ["Interest_Rate", "Collateral_Value", "Outstanding_Loan_Amount", "Monthly_EMI"]
TEXT_COLUMNS = [
    "Borrower_ID",
    "Gender",
    "Employment_Type",
    "Loan_ID",
    "Loan_Type",
    "Payment_History",
    "Recovery_Status",
    "Collection_Method",
    "Legal_Action_Taken",
]
# The 21 columns in file order.
LOAN_BOOK_COLUMNS = [
    "Borrower_ID",
    "Age",
    "Gender",
    "Employment_Type",
    "Monthly_Income",
    "Num_Dependents",
    "Loan_ID",
    "Loan_Amount",
    "Loan_Tenure",
    "Interest_Rate",
    "Loan_Type",
    "Collateral_Value",
    "Outstanding_Loan_Amount",
    "Monthly_EMI",
    "Payment_History",
    "Num_Missed_Payments",
    "Days_Past_Due",
    "Recovery_Status",
    "Collection_Attempts",
    "Collection_Method",
    "Legal_Action_Taken",
]
NUMERIC_COLUMNS = INT_COLUMNS + FLOAT_COLUMNS
