# A failing rank must end the whole job, non-zero and with a clear message, well within the
# time limit: runs `MPIRUN -np 2 PROGRAM MODE` and checks the status and output.
#   -DMPIRUN=… -DPROGRAM=… -DMODE=throw|kill -DEXPECT=<regex the output must match>
string(TIMESTAMP t0 "%s")
execute_process(COMMAND bash ${MPIRUN} -np 2 ${PROGRAM} ${MODE}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 40)
string(TIMESTAMP t1 "%s")
math(EXPR took "${t1} - ${t0}")
message(STATUS "mpirun exited with '${rc}' after ${took} s:\n${out}${err}")
if(rc MATCHES "timeout|Process terminated due to timeout")
  message(FATAL_ERROR "the job hung: mpirun still ran after 40 s")
endif()
if(rc STREQUAL "0")
  message(FATAL_ERROR "mpirun exited 0: the failing rank went unnoticed")
endif()
if(NOT "${out}${err}" MATCHES "${EXPECT}")
  message(FATAL_ERROR "the output does not say what failed (expected /${EXPECT}/)")
endif()
if(took GREATER 30)
  message(FATAL_ERROR "the job took ${took} s to end (limit 30 s)")
endif()
