# Sourced by docker/install_python.sh (build stage) and docker/fetch_model.sh (model stage): the *.crt
# files beside this one, if any, become the CA bundle of pip and of the hub download.
if ls /build-certs/*.crt >/dev/null 2>&1; then
    cat /build-certs/*.crt > /tmp/build-ca.pem
    export PIP_CERT=/tmp/build-ca.pem REQUESTS_CA_BUNDLE=/tmp/build-ca.pem SSL_CERT_FILE=/tmp/build-ca.pem
fi
