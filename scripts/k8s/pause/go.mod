module pipectl.local/k8s/pause

go 1.22
