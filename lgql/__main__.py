from lgql.cli import main

main()
