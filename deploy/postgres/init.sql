-- One PostgreSQL for the stack: a database per service that keeps state in it.
CREATE DATABASE portal;
CREATE DATABASE langfuse;
CREATE DATABASE openwebui;
