"""The consortium portal: a Django project that coordinates rounds and adds ciphertexts."""
