import sys

from loan_pipeline_tests.golden import main

sys.exit(main())
