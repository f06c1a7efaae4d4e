"""`python -m rssd_kernel -f CONNECTION_FILE`: what the kernelspec launches."""

from ipykernel.kernelapp import IPKernelApp

from rssd_kernel.kernel import RssdKernel

if __name__ == "__main__":
    IPKernelApp.launch_instance(kernel_class=RssdKernel)
