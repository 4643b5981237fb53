module example.com/gofixtures

go 1.22
