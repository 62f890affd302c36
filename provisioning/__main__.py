"""`python -m provisioning` is `cctv-provision`."""

from provisioning.cli import app

if __name__ == "__main__":
    app(prog_name="cctv-provision")
